"""How a family trains. A family names its trainer (``ModelFamily.trainer``, so ``models/``
never imports ``training/``); :func:`trainer_for` turns the name into the object, and the
runner and the benchmark ask that object to check, compile, fit or take one step.

- :class:`FitTrainer`: Keras ``fit`` on the multi-worker generator (YOLOv3, Mask R-CNN);
- :class:`AlternatingViewsTrainer`: keras-frcnn's alternating ``train_on_batch`` loop over
  the RPN and classifier views (Faster R-CNN), :mod:`detectlab.training.alternating`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from detectlab.errors import ConfigError


class FitTrainer:
    """Keras ``fit``: one optimizer, any ``tf.distribute`` strategy (with several replicas
    the generators reach them as :class:`~detectlab.training.distributed.ReplicaBatches`)."""

    name = "fit"

    def check(self, cfg) -> None:
        """Raises ``ConfigError`` for training settings this trainer cannot run."""

    def compile(self, model, new_optimizer: Callable, jit_compile: bool = False) -> None:
        """``new_optimizer()`` returns a fresh optimizer (called once per optimizer needed)."""
        model.compile(optimizer=new_optimizer(), jit_compile=jit_compile)

    def fit(self, model, family, cfg, num_classes: int, train, val, epochs: int, initial_epoch: int, callbacks,
            verbose: int):
        """Train ``model`` from ``initial_epoch`` to ``epochs``; returns the ``History``."""
        train, val = (replica_batches(model, data) for data in (train, val))
        # shuffle=False: the generator orders each epoch itself, seeded by (seed, epoch), so the
        # batches are the same on one device and on N replicas (Keras would reorder them again)
        return model.fit(train, validation_data=val, validation_steps=cfg.train.validation_steps, epochs=epochs,
                         initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose, shuffle=False)

    def optimizers(self, model) -> list:
        """The optimizers whose state a checkpoint keeps (after :meth:`compile`)."""
        return [model.optimizer]

    def step_log_names(self, model) -> set[str]:
        """Names a training (and, as ``val_``, validation) step logs."""
        return set(model.metrics_names) | {"loss"}

    def epoch_log_names(self) -> set[str]:
        """Names only training epochs log (no ``val_`` twin)."""
        return set()

    def flops_parts(self, model, images, cfg) -> list:
        """``[(keras model, inputs)]`` whose training-mode forward passes make one step."""
        return [(model, images)]

    def step_function(self, model, family, cfg, num_classes: int):
        """``(step(batch, index), loop or None)`` for a compiled model (the benchmark's step)."""
        return (lambda batch, index: model.train_on_batch(*batch)), None


class AlternatingViewsTrainer(FitTrainer):
    """keras-frcnn's loop: per batch the RPN view trains, ROIs are sampled from its proposals,
    then the classifier view trains; each view has its own optimizer. Any ``tf.distribute``
    strategy: each step runs on every replica (:class:`AlternatingTrainer`)."""

    name = "alternating"

    def compile(self, model, new_optimizer: Callable, jit_compile: bool = False) -> None:
        from detectlab.training.alternating import compile_views

        compile_views(model, new_optimizer(), new_optimizer(), jit_compile=jit_compile)

    def optimizers(self, model) -> list:
        return [model.rpn_optimizer, model.classifier_optimizer]

    def loop(self, model, family, cfg, num_classes: int):
        from detectlab.training.alternating import AlternatingTrainer

        t = cfg.train
        # the loop pulls batches with its own worker pool: the generator itself stays serial
        return AlternatingTrainer(model, family.make_sampler(cfg, num_classes), workers=t.workers,
                                  use_multiprocessing=t.use_multiprocessing, max_queue_size=t.max_queue_size)

    def fit(self, model, family, cfg, num_classes: int, train, val, epochs: int, initial_epoch: int, callbacks,
            verbose: int):
        loop = self.loop(model, family, cfg, num_classes)
        return loop.fit(train, val, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose)

    def step_log_names(self, model) -> set[str]:
        from detectlab.training.alternating import training_views

        views = training_views(model)
        return set(views.rpn.metrics_names) | set(views.classifier.metrics_names) | {"loss"}

    def epoch_log_names(self) -> set[str]:
        from detectlab.training.alternating import LOOP_LOGS

        return set(LOOP_LOGS)

    def flops_parts(self, model, images, cfg) -> list:
        from detectlab.training.alternating import training_views

        views = training_views(model)
        rois = np.tile(np.float32([[[0.1, 0.1, 0.6, 0.6]]]), (len(images), cfg.model.num_rois, 1))
        return [(views.rpn, images), (views.classifier, [images, rois])]

    def step_function(self, model, family, cfg, num_classes: int):
        loop = self.loop(model, family, cfg, num_classes)
        loop.reset_metrics()
        return (lambda batch, index: loop.train_step([batch], {})), loop


def replica_batches(model, generator):
    """``generator`` as ``fit`` should read it under the model's strategy: itself on one
    replica, else its items distributed to the replicas (``None`` stays ``None``)."""
    if generator is None or model.distribute_strategy.num_replicas_in_sync == 1:
        return generator
    from detectlab.training.distributed import ReplicaBatches

    return ReplicaBatches(generator, model.distribute_strategy)


TRAINERS = {trainer.name: trainer for trainer in (FitTrainer(), AlternatingViewsTrainer())}


def trainer_for(family) -> FitTrainer:
    """The trainer object ``family.trainer`` names."""
    try:
        return TRAINERS[family.trainer]
    except KeyError:
        raise ConfigError(f"model family {family.name}: unknown trainer '{family.trainer}' "
                          f"(known: {', '.join(TRAINERS)})") from None
