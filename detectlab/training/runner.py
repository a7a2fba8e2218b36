"""``train(cfg, workdir)``: what ``tools/train.py`` runs.

Writes into ``workdir``: ``config.yaml`` (the resolved recipe), ``logs/`` (TensorBoard:
``train/`` and ``validation/``), ``checkpoints/`` (see ``AtomicCheckpoint``),
``history.csv``, and after training ``metrics.json``, ``detections.json`` (COCO results) and
``predictions.jpg`` (of ``checkpoints/best.keras``). Stages run one after another;
``resume=True`` continues from
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
from detectlab.data.loading import load_splits, resolve_class_weights, resolve_num_classes
from detectlab.data.records import DetectionDataset
from detectlab.data.transforms import build_pipeline
from detectlab.errors import ConfigError, TrainingError, WeightsError
from detectlab.registry import MODELS
from detectlab.training.callbacks import (
    AtomicCheckpoint, LearningRateLogger, NonFiniteLossGuard, TensorBoardLogger, read_state,
)
from detectlab.training.coco_callback import CocoEvaluation, CsvLogger
from detectlab.training.devices import Cluster, make_strategy, set_precision
from detectlab.training.monitors import logged_names, resolve_monitors
from detectlab.training.optimizers import make_optimizer
from detectlab.training.trainers import trainer_for
from detectlab.utils import log
from detectlab.weights.by_name import assign, read_keras_archive
from detectlab.weights.formats import load_weights
from detectlab.weights.imagenet import load_backbone_weights


@dataclass
class TrainResult:
    model: keras.Model
    workdir: Path
    history: dict = field(default_factory=dict)
    metrics: dict | None = None


def train(cfg: Config, workdir, *, resume: bool = False, weights: str | None = None, exclude: str | None = None) -> TrainResult:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    family = MODELS.get(cfg.model.family)
    family.check(cfg.model)
    trainer = trainer_for(family)
    trainer.check(cfg)
    family.model_class.loss_settings(cfg.loss)  # terms and weights checked before the data loads
    checkpoints = workdir / "checkpoints"
    state = read_state(checkpoints) if resume else None
    if resume and state is None:
        raise ConfigError(f"--resume: no checkpoint to resume from in {checkpoints}")

    keras.utils.set_random_seed(cfg.train.seed)
    set_precision(cfg.train.precision)
    strategy = make_strategy(cfg.train.distribute, cfg.train.mirrored_devices)
    cluster = Cluster.from_environment()
    chief = cluster.chief

    train_set, val_set = load_splits(cfg, workdir)
    num_classes = resolve_num_classes(cfg, train_set)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=num_classes))
    previous_lrs = _saved_stage_lrs(workdir) if resume else None
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

    train_gen, val_gen = make_generators(cfg, family, train_set, val_set, num_classes, cluster)
    guard = NonFiniteLossGuard(tuple(model.loss_names) + ("loss",))
    evaluation = CocoEvaluation(cfg, val_set, family.with_masks, workdir / "logs") if val_set is not None else None
    monitors = resolve_monitors(cfg, logged_names(model, trainer, val_gen is not None, evaluation.names() if evaluation else ()), val_gen is not None)
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
            trainer.compile(model, lambda: make_optimizer(cfg.train, stage.lr, steps), cfg.train.jit_compile)
        if not restored:
            _restore(model, checkpoints / state["checkpoint"], mid_stage=initial > start, strategy=strategy)
            restored = True
            if initial > start:
                _apply_changed_lr(model, cfg, previous_lrs, index, stage.lr)
        train_gen.set_epoch(initial)
        callbacks = make_callbacks(cfg, workdir, guard, chief, resume or index > 0, initial * len(train_gen), index,
                                   evaluation, monitors)
        fit = trainer.fit(model, family, cfg, num_classes, train_gen, val_gen, end, initial, callbacks,
                          _verbosity(cfg.train.verbose))
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
        from detectlab.evaluation.evaluate import evaluate_run

        metrics = evaluate_run(model, cfg, val_set, workdir)
    return TrainResult(model=model, workdir=workdir, history=history, metrics=metrics)


def make_generators(cfg: Config, family, train_set: DetectionDataset, val_set: DetectionDataset | None, num_classes: int,
                    cluster: Cluster | None = None):
    """Training and validation batches; under ``multi_worker`` each process reads its shard
    (``cluster``, default: from ``TF_CONFIG``)."""
    t = cfg.train
    encoder = family.make_encoder(cfg, num_classes)
    size = cfg.model.image_size
    common = dict(
        workers=t.workers,
        use_multiprocessing=t.use_multiprocessing and t.workers > 0,
        max_queue_size=t.max_queue_size,
    )
    cluster = cluster or Cluster.from_environment()
    shards = dict(num_shards=cluster.workers, shard_index=cluster.index) if t.distribute == "multi_worker" else {}
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


def make_callbacks(cfg: Config, workdir: Path, guard, chief: bool, append: bool, start_step: int, stage: int,
                   evaluation: CocoEvaluation | None, monitors) -> list:
    t = cfg.train
    callbacks: list = [LearningRateLogger(), guard]
    if not chief:
        return callbacks
    if evaluation is not None and evaluation.interval:
        callbacks.append(evaluation)  # before the callbacks that read its val_AP* values
    csv = workdir / "history.csv"
    if not append and csv.exists():
        csv.unlink()
    freq = t.tensorboard_update_freq
    tensorboard = TensorBoardLogger(log_dir=str(workdir / "logs"), update_freq=int(freq) if freq.isdigit() else freq,
                                    write_graph=False)
    tensorboard.start_step = start_step
    callbacks += [
        tensorboard,
        CsvLogger(str(csv), append=True, later=evaluation.names() if evaluation else ()),
        AtomicCheckpoint(workdir / "checkpoints", t.checkpoint_keep, monitors.checkpoint.name, guard, {"stage": stage}, monitors.checkpoint.mode),
    ]
    if monitors.plateau is not None:
        p, m = t.reduce_lr_on_plateau, monitors.plateau
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=m.name, mode=m.mode, factor=p.factor, patience=p.patience, min_lr=p.min_lr, verbose=1))
    if monitors.early_stopping is not None:
        e, m = t.early_stopping, monitors.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(monitor=m.name, mode=m.mode, patience=e.patience, min_delta=e.min_delta, verbose=1))
    return callbacks


def _verbosity(verbose: int) -> int:
    """A progress bar on a terminal; one line per epoch when output goes to a file/pipe."""
    import sys

    return 2 if verbose == 1 and not sys.stdout.isatty() else verbose


def _saved_stage_lrs(workdir: Path) -> list[float] | None:
    """The stage learning rates of the run's saved ``config.yaml`` (before a resume)."""
    from detectlab.config import load_config

    path = workdir / "config.yaml"
    try:
        return [s.lr for s in load_config(path).stages()] if path.is_file() else None
    except ConfigError:
        return None


def _apply_changed_lr(model, cfg: Config, previous_lrs: list[float] | None, index: int, lr: float) -> None:
    """Resuming mid-stage restores the optimizer's rate; a rate changed since (``--resume
    --lr X``) replaces it, and the log says so."""
    old = previous_lrs[index] if previous_lrs and index < len(previous_lrs) else None
    if old is None or old == lr:
        return
    if cfg.train.lr_schedule == "constant" and not cfg.train.warmup_steps:
        model.optimizer.learning_rate = lr  # a schedule is rebuilt from the new rate already
    log.info("learning rate changed on resume: %g (the run had %g)", lr, old)


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
