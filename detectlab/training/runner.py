"""``train(cfg, workdir)``: what ``tools/train.py`` runs.

Writes into ``workdir``: ``config.yaml`` (the resolved recipe), ``logs/`` (TensorBoard:
``train/`` and ``validation/``), ``checkpoints/`` (see ``AtomicCheckpoint``),
``history.csv``, and after training ``metrics.json``, ``detections_val.json`` and
``predictions.jpg``. Stages run one after another; ``resume=True`` continues from
``checkpoints/state.json`` in the right stage and epoch (with the optimizer state when
the stage was interrupted mid-way).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import keras

from detectlab.config import Config
from detectlab.data.generator import DetectionBatches
from detectlab.data.loading import load_split, resolve_class_weights, resolve_num_classes
from detectlab.data.records import DetectionDataset
from detectlab.data.transforms import build_pipeline
from detectlab.errors import ConfigError, TrainingError, WeightsError
from detectlab.registry import MODELS
from detectlab.training.callbacks import AtomicCheckpoint, LearningRateLogger, NonFiniteLossGuard, read_state
from detectlab.training.devices import is_chief, make_strategy, set_precision, worker_count, worker_index
from detectlab.training.optimizers import make_optimizer
from detectlab.utils import log
from detectlab.weights.by_name import assign, load_weights, read_keras_archive
from detectlab.weights.imagenet import load_backbone_weights


@dataclass
class TrainResult:
    model: keras.Model
    workdir: Path
    history: dict = field(default_factory=dict)
    metrics: dict | None = None


class TensorBoardLogger(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, with batch steps continuing across stages/resumes."""

    start_step = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._global_train_batch = self.start_step


def train(cfg: Config, workdir, *, resume: bool = False, weights: str | None = None, exclude: str | None = None) -> TrainResult:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    family = MODELS.get(cfg.model.family)
    family.check(cfg.model)
    if family.trainer == "alternating" and cfg.train.distribute != "none":
        raise ConfigError(f"train.distribute: the alternating {family.name} loop runs on one device (use 'none')")
    checkpoints = workdir / "checkpoints"
    state = read_state(checkpoints) if resume else None
    if resume and state is None:
        raise ConfigError(f"--resume: no checkpoint to resume from in {checkpoints}")

    keras.utils.set_random_seed(cfg.train.seed)
    set_precision(cfg.train.precision)
    strategy = make_strategy(cfg.train.distribute, cfg.train.mirrored_devices)
    chief = is_chief()

    train_set = load_split(cfg, "train", workdir)
    val_set = load_split(cfg, "val", workdir)
    num_classes = resolve_num_classes(cfg, train_set)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=num_classes))
    if chief:
        cfg.save(workdir / "config.yaml")
    class_weights = resolve_class_weights(cfg.loss.class_weights, train_set)

    with strategy.scope():
        model = family.build(cfg, num_classes, class_weights, (train_set.class_names, train_set.category_ids))
    if cfg.model.backbone_weights and state is None:
        report = load_backbone_weights(model, cfg.model)
        log.info("backbone weights from %s: %s", cfg.model.backbone_weights, report.summary())
    if weights and state is None:
        report = load_weights(model, weights, exclude)
        log.info("weights from %s: %s", weights, report.summary())

    train_gen, val_gen = make_generators(cfg, family, train_set, val_set, num_classes)
    guard = NonFiniteLossGuard(tuple(model.LOSS_NAMES) + ("loss",))
    history: dict = {}
    done = state["epoch"] if state else 0
    start = 0
    restored = state is None
    for index, stage in enumerate(cfg.stages()):
        end = start + stage.epochs
        if done >= end:
            start = end
            continue
        initial = max(start, done)
        trained = model.set_trainable_layers(stage.layers)
        log.info("stage %d/%d '%s': epochs %d-%d, lr %g, %d layers train (%s)", index + 1, len(cfg.stages()),
                 stage.name, initial + 1, end, stage.lr, len(trained), stage.layers)
        steps = stage.epochs * len(train_gen)
        with strategy.scope():
            if family.trainer == "alternating":
                model.compile_views(make_optimizer(cfg.train, stage.lr, steps), make_optimizer(cfg.train, stage.lr, steps),
                                    jit_compile=cfg.train.jit_compile)
            else:
                model.compile(optimizer=make_optimizer(cfg.train, stage.lr, steps), jit_compile=cfg.train.jit_compile)
        if not restored:
            _restore(model, checkpoints / state["checkpoint"], mid_stage=initial > start, strategy=strategy)
            restored = True
        train_gen.set_epoch(initial)
        callbacks = make_callbacks(cfg, workdir, guard, chief, resume or index > 0, initial * len(train_gen), index)
        fit = fit_stage(model, family, cfg, num_classes, train_gen, val_gen, end, initial, callbacks)
        for key, values in fit.history.items():
            history.setdefault(key, []).extend(values)
        if guard.event is not None:
            last = checkpoints / "last.keras"
            where = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written"
            raise TrainingError(f"training stopped: {guard.event.message()}; {where}")
        if model.stop_training and index < len(cfg.stages()) - 1:
            log.info("early stopping ended stage '%s'", stage.name)
        start = end
    metrics = None
    if cfg.eval.after_training and val_set is not None and chief:
        from detectlab.evaluation.evaluate import evaluate_model

        log.info("evaluating on %s (%d images)", val_set.annotation_file, len(val_set))
        metrics = evaluate_model(model, cfg, val_set, workdir)
    return TrainResult(model=model, workdir=workdir, history=history, metrics=metrics)


def fit_stage(model, family, cfg: Config, num_classes: int, train_gen, val_gen, epochs: int, initial: int, callbacks):
    """One stage: Keras ``fit`` on the generator, or the family's alternating loop."""
    t = cfg.train
    verbose = _verbosity(t.verbose)
    if family.trainer == "alternating":
        from detectlab.training.alternating import AlternatingTrainer

        trainer = AlternatingTrainer(model, family.make_sampler(cfg, num_classes), seed=t.seed, workers=t.workers,
                                     use_multiprocessing=t.use_multiprocessing, max_queue_size=t.max_queue_size)
        # the loop pulls batches with its own worker pool: the generator itself stays serial
        return trainer.fit(train_gen, val_gen, epochs=epochs, initial_epoch=initial, callbacks=callbacks, verbose=verbose)
    return model.fit(train_gen, validation_data=val_gen, validation_steps=t.validation_steps, epochs=epochs,
                     initial_epoch=initial, callbacks=callbacks, verbose=verbose)


def make_generators(cfg: Config, family, train_set: DetectionDataset, val_set: DetectionDataset | None, num_classes: int):
    t = cfg.train
    encoder = family.make_encoder(cfg, num_classes)
    size = cfg.model.image_size
    common = dict(
        workers=t.workers,
        use_multiprocessing=t.use_multiprocessing and t.workers > 0,
        max_queue_size=t.max_queue_size,
    )
    shards = dict(num_shards=worker_count(), shard_index=worker_index()) if t.distribute == "multi_worker" else {}
    train_gen = DetectionBatches(
        train_set, build_pipeline(size, cfg.augment), encoder, t.batch_size,
        shuffle=True, seed=t.seed, steps_per_epoch=t.steps_per_epoch, with_masks=family.with_masks, **shards, **common,
    )
    val_gen = None
    if val_set is not None:
        val_gen = DetectionBatches(
            val_set, build_pipeline(size, None), encoder, t.batch_size,
            shuffle=False, seed=t.seed, with_masks=family.with_masks, **shards, **common,
        )
    return train_gen, val_gen


def make_callbacks(cfg: Config, workdir: Path, guard, chief: bool, append: bool, start_step: int, stage: int) -> list:
    t = cfg.train
    callbacks: list = [LearningRateLogger(), guard]
    if not chief:
        return callbacks
    csv = workdir / "history.csv"
    if not append and csv.exists():
        csv.unlink()
    freq = t.tensorboard_update_freq
    tensorboard = TensorBoardLogger(log_dir=str(workdir / "logs"), update_freq=int(freq) if freq.isdigit() else freq,
                                    write_graph=False)
    tensorboard.start_step = start_step
    callbacks += [
        tensorboard,
        keras.callbacks.CSVLogger(str(csv), append=True),
        AtomicCheckpoint(workdir / "checkpoints", t.checkpoint_keep, t.monitor, guard, {"stage": stage}),
    ]
    if t.reduce_lr_on_plateau is not None:
        p = t.reduce_lr_on_plateau
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=p.monitor, factor=p.factor, patience=p.patience, min_lr=p.min_lr, verbose=1))
    if t.early_stopping is not None:
        e = t.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(monitor=e.monitor, patience=e.patience, min_delta=e.min_delta, verbose=1))
    return callbacks


def _verbosity(verbose: int) -> int:
    """A progress bar on a terminal; one line per epoch when output goes to a file/pipe."""
    import sys

    return 2 if verbose == 1 and not sys.stdout.isatty() else verbose


def _restore(model, checkpoint: Path, mid_stage: bool, strategy) -> None:
    """Resume: weights always; optimizer state too when the stage was interrupted."""
    if not checkpoint.is_file():
        raise WeightsError(f"{checkpoint}: checkpoint named in state.json is missing")
    if not mid_stage:
        assign(model, read_keras_archive(checkpoint), str(checkpoint))
        log.info("resumed weights from %s (new stage: fresh optimizer)", checkpoint)
        return
    if not getattr(model.optimizer, "built", True):
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
    model.load_weights(str(checkpoint))
    if int(model.optimizer.iterations.numpy()) == 0:
        raise WeightsError(f"{checkpoint}: the optimizer state does not match this stage's trainable layers")
    log.info("resumed weights and optimizer state (step %d) from %s", int(model.optimizer.iterations.numpy()), checkpoint)
