"""The alternating ``train_on_batch`` loop of Faster R-CNN, with Keras callbacks.

Per batch, as in keras-frcnn: the RPN view's ``train_on_batch`` (which also returns the proposals
decoded from its predictions) -> ROI sampling and labelling (numpy, vectorised) ->
the classifier view's ``train_on_batch``. One ``keras.callbacks.CallbackList`` sees exactly what
``fit`` would show it (``on_train_begin``, ``on_epoch_begin``, ``on_train_batch_begin/end``
with the merged named logs, ``on_epoch_end`` with ``val_`` logs, ``on_train_end``), so stock
TensorBoard, CSVLogger, History, EarlyStopping, ReduceLROnPlateau and our checkpoint / NaN
callbacks work unchanged.

Logged per batch: ``rpn_loss_cls``, ``rpn_loss_regr``, ``class_loss_cls``,
``class_loss_regr``, ``class_acc``, ``rpn_loss``, ``class_loss``, ``loss`` (their sum),
``rois_positive`` (mean foreground ROIs per image) and ``outside_share`` (fraction of the
step spent outside the two ``train_on_batch`` calls: sampling and bookkeeping). A batch in
which no image yields a usable ROI skips the classifier step and is counted
(``skipped_classifier_batches``, logged at the end of each epoch).
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from detectlab.data.prefetch import iterate_batches
from detectlab.data.rcnn_targets import RoiSampler
from detectlab.losses.faster_rcnn import class_accuracy
from detectlab.models.base import replica_scale
from detectlab.training.optimizers import ALTERNATING_INITIAL_LOSS_SCALE, loss_scaled
from detectlab.utils import log

PROPOSAL_KEYS = ("proposals", "proposal_counts")
# logged by the loop itself, besides the two views' losses and metrics
LOOP_LOGS = ("rois_positive", "outside_share", "skipped_classifier_batches")


class TrainingView(keras.Model):
    """A functional view on some of the combined model's layers, with named losses.

    ``criterion(x, y, outputs, group)`` gives the view's named loss terms (its ``group`` of the
    family's criterion); logs are the weighted terms, their sum under ``total_name`` and any
    ``metrics`` (name -> ``fn(y, outputs)``).
    """

    def __init__(self, inputs, outputs, criterion, group: str, weights: dict, total_name: str, metrics=None, extra=None,
                 **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.criterion, self.group = criterion, group
        names = criterion.group(group)
        self.term_weights = {k: float(weights.get(k, 1.0)) for k in names}
        self.metric_fns = metrics or {}
        self.extra_fn = extra
        self.total_name = total_name
        self.trackers = {n: keras.metrics.Mean(name=n) for n in (*names, *self.metric_fns, total_name)}

    def _named_losses(self, x, y, outputs):
        total = 0.0
        for name, term in self.criterion(x, y, outputs, self.group).items():
            value = self.term_weights[name] * term
            self.trackers[name].update_state(value)
            total = total + value
        for name, fn in self.metric_fns.items():
            self.trackers[name].update_state(fn(y, outputs))
        self.trackers[self.total_name].update_state(total)
        return total

    def _step_logs(self, outputs) -> dict:
        logs = {name: t.result() for name, t in self.trackers.items()}
        if self.extra_fn is not None:
            logs.update(self.extra_fn(outputs))
        return logs

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            outputs = self(x, training=True)
            loss = replica_scale(self._named_losses(x, y, outputs))
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return self._step_logs(outputs)

    def test_step(self, data):
        x, y = data[0], data[1]
        outputs = self(x, training=False)
        self._named_losses(x, y, outputs)
        return self._step_logs(outputs)


class LearningRates:
    """Stands in as ``model.optimizer`` for callbacks: reads the RPN optimizer's rate and
    sets both (``ReduceLROnPlateau``); ``optimizers`` lets TensorBoard log each."""

    def __init__(self, *optimizers):
        self.optimizers = list(optimizers)

    @property
    def learning_rate(self):
        return self.optimizers[0].learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        for optimizer in self.optimizers:
            optimizer.learning_rate = value

    @property
    def iterations(self):
        return self.optimizers[0].iterations


class Views:
    """The two training views of a Faster R-CNN model (plain holder, not tracked by Keras, so
    the views are not saved twice).

    - ``rpn``: images -> RPN; ``train_on_batch`` returns ``rpn_loss_cls``, ``rpn_loss_regr``,
      ``rpn_loss`` and the proposals decoded (in-graph) from the very predictions it trained
      on (the reference ran an extra ``predict_on_batch`` for them);
    - ``classifier``: images + ROIs -> classifier; returns ``class_loss_cls``,
      ``class_loss_regr``, ``class_acc``, ``class_loss``.
    """

    def __init__(self, rpn: TrainingView, classifier: TrainingView):
        self.rpn, self.classifier = rpn, classifier


def training_views(model) -> Views:
    """The model's :class:`Views`, built on its layers the first time they are asked for."""
    views = getattr(model, "_training_views", None)
    if views is None:
        g = model.graph_parts

        def proposals(outputs):
            boxes, counts = model.proposal_layer(outputs[0], outputs[1])
            return {"proposals": boxes, "proposal_counts": counts}

        rpn = TrainingView(
            g.images, [g.rpn_scores, g.rpn_deltas], model.criterion, "rpn",
            weights=model.loss_weights, total_name="rpn_loss", extra=proposals, name="rpn_view",
        )
        classifier = TrainingView(
            [g.images, g.rois], [g.class_probs, g.class_deltas], model.criterion, "classifier",
            weights=model.loss_weights, total_name="class_loss",
            metrics={"class_acc": lambda y, o: class_accuracy(y["classes"], o[0])}, name="classifier_view",
        )
        views = model._training_views = Views(rpn, classifier)
    return views


def compile_views(model, rpn_optimizer, classifier_optimizer, jit_compile: bool = False) -> Views:
    """Compile both views (under ``mixed_float16`` each optimizer is wrapped in a loss scaler
    starting at ``ALTERNATING_INITIAL_LOSS_SCALE``); the combined model keeps both plain
    optimizers (saved with it) and a :class:`LearningRates` as its ``optimizer`` for the
    callbacks."""
    views = training_views(model)
    for view, optimizer in ((views.rpn, rpn_optimizer), (views.classifier, classifier_optimizer)):
        view.compile(optimizer=loss_scaled(optimizer, view, ALTERNATING_INITIAL_LOSS_SCALE), jit_compile=jit_compile)
        view.optimizer.build(view.trainable_variables)
    # the plain optimizers are saved with the model (a loss scale is no training state to keep)
    model.rpn_optimizer, model.classifier_optimizer = (getattr(v.optimizer, "inner_optimizer", v.optimizer)
                                                       for v in (views.rpn, views.classifier))
    model.optimizer = LearningRates(model.rpn_optimizer, model.classifier_optimizer)
    return views


class AlternatingTrainer:
    def __init__(self, model, sampler: RoiSampler, seed: int = 0, workers: int = 0, use_multiprocessing: bool = True, max_queue_size: int = 10):
        self.model = model
        self.views = training_views(model)
        self.sampler = sampler
        self.seed = int(seed)
        self.loader = dict(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        self.skipped_classifier_batches = 0

    def fit(self, train, validation_data=None, epochs: int = 1, initial_epoch: int = 0, callbacks=(), verbose: int = 1):
        model = self.model
        callback_list = keras.callbacks.CallbackList(
            list(callbacks), add_history=True, add_progbar=verbose != 0, model=model,
            verbose=verbose, epochs=epochs, steps=len(train),
        )
        model.stop_training = False
        callback_list.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            train.set_epoch(epoch)
            logs = {}
            skipped_before = self.skipped_classifier_batches
            for step, batch in enumerate(iterate_batches(train, **self.loader)):
                callback_list.on_train_batch_begin(step)
                logs = self.train_step(batch, epoch, step, logs)
                callback_list.on_train_batch_end(step, logs)
                if model.stop_training:
                    break
            epoch_logs = dict(logs)
            epoch_logs["skipped_classifier_batches"] = float(self.skipped_classifier_batches - skipped_before)
            if epoch_logs["skipped_classifier_batches"]:
                log.warning("epoch %d: %d batches had no usable ROI (classifier step skipped)", epoch + 1,
                            int(epoch_logs["skipped_classifier_batches"]))
            if validation_data is not None and not model.stop_training:
                epoch_logs.update({f"val_{k}": v for k, v in self.evaluate(validation_data).items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
        callback_list.on_train_end()
        return next(cb for cb in callback_list.callbacks if isinstance(cb, keras.callbacks.History))

    def train_step(self, batch, epoch: int, step: int, previous: dict) -> dict:
        x, y = batch
        start = time.perf_counter()
        rpn_logs = self.views.rpn.train_on_batch(x, y, return_dict=True)
        rpn_time = time.perf_counter() - start
        rois = self._sample(rpn_logs, y, (epoch, step))
        classifier_time = 0.0
        if rois.positives + rois.negatives == 0:
            self.skipped_classifier_batches += 1
            cls_logs = {k: v for k, v in previous.items() if k.startswith("class_")}
        else:
            t = time.perf_counter()
            cls_logs = self.views.classifier.train_on_batch(
                [x, rois.rois], {"classes": rois.classes, "regress": rois.regress}, return_dict=True
            )
            classifier_time = time.perf_counter() - t
        total = time.perf_counter() - start
        self.outside_shares.append(1.0 - (rpn_time + classifier_time) / total)
        self._positives.append(rois.positives / len(x))
        return self._merge(rpn_logs, cls_logs, outside_share=float(np.mean(self.outside_shares)), rois_positive=float(np.mean(self._positives)))

    def evaluate(self, data) -> dict:
        """Mean losses over ``data`` (proposals from the RPN, ROIs sampled with fixed seeds)."""
        self.reset_metrics()
        logs = {}
        for step, (x, y) in enumerate(iterate_batches(data, **self.loader)):
            rpn_logs = self.views.rpn.test_on_batch(x, y, return_dict=True)
            rois = self._sample(rpn_logs, y, (-1, step))
            cls_logs = {k: v for k, v in logs.items() if k.startswith("class_")}
            if rois.positives + rois.negatives:
                cls_logs = self.views.classifier.test_on_batch(
                    [x, rois.rois], {"classes": rois.classes, "regress": rois.regress}, return_dict=True
                )
            logs = self._merge(rpn_logs, cls_logs)
        return {k: v for k, v in logs.items() if k not in ("outside_share", "rois_positive")}

    def _sample(self, rpn_logs: dict, y: dict, key):
        proposals = np.asarray(rpn_logs.pop("proposals"))
        counts = np.asarray(rpn_logs.pop("proposal_counts"))
        rng = np.random.default_rng([self.seed, *(k + 1 for k in key)])
        return self.sampler.sample(proposals, counts, y["gt_boxes"], y["gt_class_ids"], rng)

    @staticmethod
    def _merge(rpn_logs: dict, cls_logs: dict, **extra) -> dict:
        logs = {k: float(v) for k, v in {**rpn_logs, **cls_logs}.items()}
        logs["loss"] = logs.get("rpn_loss", 0.0) + logs.get("class_loss", 0.0)
        logs.update(extra)
        return logs

    def reset_metrics(self) -> None:
        self.views.rpn.reset_metrics()
        self.views.classifier.reset_metrics()
        self.outside_shares, self._positives = [], []
