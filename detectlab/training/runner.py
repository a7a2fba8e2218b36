"""``train(cfg, workdir)``: what ``tools/train.py`` runs.

Writes into ``workdir`` (the chief only, in a multi-worker run): ``config.yaml`` (the resolved recipe), ``logs/`` (TensorBoard:
``train/`` and ``validation/``), ``checkpoints/`` (see ``AtomicCheckpoint``),
``history.csv``, and after training ``metrics.json``, ``detections.json`` (COCO results) and
``predictions.jpg`` (of ``checkpoints/best.keras``). Stages run one after another;
``resume=True`` continues from
``checkpoints/state.json`` in the right stage and epoch (with the optimizer state when
the stage was interrupted mid-way).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from detectlab.checkpoints import resume_state
from detectlab.config import Config
from detectlab.data.generator import DetectionBatches
from detectlab.data.loading import load_splits, resolve_class_weights, resolve_num_classes
from detectlab.data.mosaic import MosaicAugment
from detectlab.data.records import DetectionDataset
from detectlab.data.transforms import build_pipeline
from detectlab.errors import ConfigError, TrainingError, WeightsError
from detectlab.models.loading import adopt_file_settings
from detectlab.registry import MODELS
from detectlab.training.callbacks import (
    AtomicCheckpoint, LearningRateLogger, NonFiniteLossGuard, SmoothedPlateau, TensorBoardLogger,
)
from detectlab.training.coco_callback import CocoEvaluation, CsvLogger
from detectlab.training.devices import Cluster, cluster_error, finish_cluster, make_strategy, set_precision
from detectlab.training.distributed import ReplicaLayout, from_chief, sync_from_chief
from detectlab.training.ema import WeightEMA, raw_weights_path
from detectlab.training.monitors import logged_names, resolve_monitors
from detectlab.training.optimizers import OptimizerChoice, choose_optimizer, describe_schedule, make_optimizer
from detectlab.training.trainers import trainer_for
from detectlab.utils import log
from detectlab.weights.by_name import assign, read_keras_archive
from detectlab.weights.formats import FileSettings, file_settings, load_backbone_weights, load_weights


@dataclass
class TrainResult:
    model: keras.Model
    workdir: Path
    history: dict = field(default_factory=dict)
    metrics: dict | None = None
    chief: bool = True  # this process wrote the run folder (the others of a multi-worker run did not)


def train(cfg: Config, workdir, *, resume: bool = False, weights: str | None = None, exclude: str | None = None,
          cfg_file=None) -> TrainResult:
    """Train ``cfg`` into ``workdir``. ``weights``: the file to start from (its network settings,
    e.g. a Darknet ``.cfg``'s anchors, replace the recipe's:
    :func:`detectlab.models.loading.adopt_file_settings`); ``cfg_file``: a Darknet ``.weights``
    file's ``.cfg`` when it is not beside it.

    Under ``train.distribute: multi_worker`` every worker runs this with the same recipe; only
    the chief writes ``workdir`` (the others write into a temporary folder inside theirs,
    removed at the end), and a lost worker is a :class:`~detectlab.errors.ClusterError` naming
    it. A process that trained in a cluster must end with
    :func:`detectlab.training.devices.leave_cluster`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    multi_worker = cfg.train.distribute == "multi_worker"
    cluster = Cluster.from_environment() if multi_worker else Cluster()
    checkpoints = workdir / "checkpoints"
    state = resume_state(checkpoints) if resume and cluster.chief else None  # only the chief has it
    if resume and state is None and not multi_worker:  # before TensorFlow starts (a cluster checks once formed)
        raise ConfigError(f"--resume: no checkpoint to resume from in {checkpoints}")
    stated = file_settings(weights, cfg_file) if weights and not resume else None  # a resumed run has its settings
    if stated is not None:  # a recipe's "auto" (model.anchors) is resolved below, knowing what loaded
        cfg = adopt_file_settings(cfg, stated, training=True, keep_auto=True)
    family = MODELS.get(cfg.model.family)
    family.check(cfg.model)
    trainer = trainer_for(family)
    trainer.check(cfg)
    if cfg.train.multi_scale is not None:
        check_multi_scale(cfg, family)
    family.model_class.loss_settings(cfg.loss)  # terms and weights checked before the data loads

    keras.utils.set_random_seed(cfg.train.seed)
    set_precision(cfg.train.precision)
    strategy = make_strategy(cfg.train.distribute, cfg.train.mirrored_devices, cfg.train.cluster_timeout)
    scratch = None if cluster.chief else Path(tempfile.mkdtemp(prefix=f".worker{cluster.index}-", dir=workdir))
    try:
        return _train(cfg, workdir, scratch, family, trainer, strategy, cluster, state, resume, weights, exclude, cfg_file,
                      stated)
    except tf.errors.OpError as exc:
        error = cluster_error(exc, cluster, cfg.train.cluster_timeout)
        if error is None:
            raise
        raise error from None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _train(cfg: Config, workdir: Path, scratch: Path | None, family, trainer, strategy, cluster: Cluster,
           state: dict | None, resume: bool, weights: str | None, exclude: str | None, cfg_file,
           stated: FileSettings | None) -> TrainResult:
    chief = cluster.chief
    out = workdir if chief else scratch  # what this process writes: the run folder, or a folder nobody reads
    checkpoints = workdir / "checkpoints"
    state = _resume_state(state, checkpoints, resume, strategy, chief)
    layout = ReplicaLayout.of(strategy, cluster)
    if cfg.train.batch_size < layout.replicas:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} images cannot feed {layout.replicas} replicas "
                          "(it is the global batch, split across all replicas)")
    if cfg.train.distribute != "none":
        log.info("%s: %s", cfg.train.distribute, layout.describe(cfg.train.batch_size))
    jit_compile = cfg.train.jit_compile and layout.replicas == 1
    if cfg.train.jit_compile and not jit_compile:  # what Keras' jit_compile="auto" decides under tf.distribute too
        log.warning("train.jit_compile: XLA stays off with %d replicas (TensorFlow cannot compile a step whose "
                    "variables live on several devices)", layout.replicas)

    train_set, val_set = load_splits(cfg, workdir)
    num_classes = resolve_num_classes(cfg, train_set)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=num_classes))
    previous_lrs = _saved_stage_lrs(workdir) if resume and chief else None
    class_weights = resolve_class_weights(cfg.loss.class_weights, train_set)

    recipe = cfg
    if family.fit_anchors is not None:  # as if the outputs start fresh; checked again once weights are in
        cfg = family.fit_anchors(recipe, train_set, report=False)
    with strategy.scope():
        model = family.build(cfg, num_classes, class_weights, (train_set.class_names, train_set.category_ids))
    if cfg.model.backbone_weights and state is None:
        report = load_backbone_weights(model, cfg.model)
        log.info("backbone weights from %s: %s", cfg.model.backbone_weights, report.summary())
    loaded = []
    if weights and state is None:
        report = load_weights(model, weights, exclude, cfg_file)
        loaded = report.loaded
        log.info("weights from %s: %s", weights, report.summary())
    if family.fit_anchors is not None:
        fitted = family.fit_anchors(recipe, train_set, loaded, report=chief, stated=stated.model if stated else None)
        if fitted.model.anchors != cfg.model.anchors:
            model.set_anchors(fitted.model.anchors)
        cfg = fitted
    if chief:
        cfg.save(workdir / "config.yaml")  # with the anchors resolved

    train_gen, val_gen = make_generators(cfg, family, train_set, val_set, num_classes, layout)
    guard = NonFiniteLossGuard(tuple(model.loss_names) + ("loss",))
    ema = WeightEMA(cfg.train.ema.decay, cfg.train.ema.ramp_steps) if cfg.train.ema else None
    choice = choose_optimizer(cfg.train, num_classes, cfg.total_epochs() * train_gen.steps())
    evaluation = None
    if val_set is not None:
        evaluation = CocoEvaluation(cfg, val_set, family.with_masks, out / "logs" if chief else None)
        evaluation.share(strategy, chief)
    monitors = resolve_monitors(cfg, logged_names(model, trainer, val_gen is not None, evaluation.names() if evaluation else ()), val_gen is not None)
    history: dict = {}
    done = state["epoch"] if state else 0
    start = 0
    restored = state is None
    synced = False
    for index, stage in enumerate(cfg.stages()):
        end = start + stage.epochs
        if done >= end:
            start = end
            continue
        initial = max(start, done)
        trained = model.set_trainable_layers(stage.layers)
        log.info("stage %d/%d '%s': epochs %d-%d, lr %g, %d layers train (%s)", index + 1, len(cfg.stages()),
                 stage.name, initial + 1, end, stage.lr * choice.rate_scale, len(trained), stage.layers)
        steps = stage.epochs * train_gen.steps()
        log.info("learning rate: %s", describe_schedule(cfg.train, stage.lr, steps, train_gen.steps(), choice))
        with strategy.scope():
            trainer.compile(model, lambda: make_optimizer(cfg.train, stage.lr, steps, train_gen.steps(), choice),
                            jit_compile)
        if not restored:
            if chief:
                _restore(model, checkpoints / state["checkpoint"], mid_stage=initial > start, strategy=strategy, ema=ema)
                if initial > start:
                    _apply_changed_lr(model, cfg, previous_lrs, index, stage.lr, choice)
            restored = True
        if layout.workers > 1 and not synced:  # the chief's weights (loaded, restored) on every worker
            optimizers = trainer.optimizers(model)
            with strategy.scope():
                for optimizer in optimizers:
                    if not optimizer.built:
                        optimizer.build(model.trainable_variables)
            shared = [*model.variables, *(v for o in optimizers for v in o.variables)]
            if ema is not None:  # the chief's average (restored on --resume) and its update count too
                ema.attach(model)
                shared += ema.shadow
                ema.updates = int(from_chief(strategy, {"updates": ema.updates})["updates"])
            sync_from_chief(strategy, shared)
            synced = True
        train_gen.set_epoch(initial)
        callbacks = make_callbacks(cfg, out, guard, resume or index > 0, initial * train_gen.steps(), index,
                                   evaluation, monitors, (start, end), ema)
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
    finish_cluster(cluster, cfg.train.cluster_timeout)
    return TrainResult(model=model, workdir=workdir, history=history, metrics=metrics, chief=chief)


def _resume_state(state: dict | None, checkpoints: Path, resume: bool, strategy, chief: bool) -> dict | None:
    """The chief's ``state.json`` (``state``; ``None`` for a new run) on every worker: in a
    multi-worker run only the chief has it, the others get its epoch (their weights come from
    the chief later)."""
    shared = from_chief(strategy, {"epoch": float(state["epoch"]) if state else -1.0})
    if resume and shared["epoch"] < 0:
        where = checkpoints if chief else "the chief's run folder"
        raise ConfigError(f"--resume: no checkpoint to resume from in {where}")
    if state is None and shared["epoch"] >= 0:
        state = {"epoch": int(shared["epoch"])}
    return state


def make_generators(cfg: Config, family, train_set: DetectionDataset, val_set: DetectionDataset | None, num_classes: int,
                    layout: ReplicaLayout | None = None):
    """Training and validation batches of ``train.batch_size`` images per step (the global
    batch); with several replicas (``layout``) each process yields its replicas' shares."""
    t = cfg.train
    encoder = family.make_encoder(cfg, num_classes)
    size = cfg.model.image_size
    common = dict(
        workers=t.workers,
        use_multiprocessing=t.use_multiprocessing and t.workers > 0,
        max_queue_size=t.max_queue_size,
    )
    layout = layout or ReplicaLayout()
    shards = dict(num_shards=layout.workers, shard_index=layout.worker, local_replicas=layout.local)
    composer = MosaicAugment(cfg.augment, len(train_set)) if cfg.augment.composes() else None
    scales = None
    if t.multi_scale is not None:
        check_multi_scale(cfg, family)
        scales = {s: (build_pipeline(s, cfg.augment, geometry=composer is None), family.make_encoder(
            dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=s)), num_classes))
            for s in t.multi_scale.sizes}
    train_gen = DetectionBatches(
        train_set, build_pipeline(size, cfg.augment, geometry=composer is None), encoder, t.batch_size,
        shuffle=True, seed=t.seed, steps_per_epoch=t.steps_per_epoch, with_masks=family.with_masks, **shards, **common,
        composer=composer, image_size=size, mosaic_epochs=max(0, cfg.total_epochs() - cfg.augment.close_mosaic_epochs),
        scales=scales, scale_every=t.multi_scale.every if t.multi_scale else 10,
    )
    val_gen = None
    if val_set is not None:
        if len(val_set) < layout.replicas:
            raise ConfigError(f"validation split: {len(val_set)} images cannot feed {layout.replicas} replicas")
        val_gen = DetectionBatches(
            val_set, build_pipeline(size, None), encoder, t.batch_size,
            shuffle=False, seed=t.seed, with_masks=family.with_masks, **shards, **common,
        )
    return train_gen, val_gen


def check_multi_scale(cfg: Config, family) -> None:
    """``train.multi_scale`` needs a family that takes any input size, and sizes it takes."""
    sizes = cfg.train.multi_scale.sizes
    if not family.input_stride:
        raise ConfigError(f"train.multi_scale: {family.name} is built for one input size (model.image_size); "
                          "multi-scale training is for YOLO")
    bad = [s for s in sizes if s % family.input_stride]
    if len(set(sizes)) < 2 or bad:
        raise ConfigError(f"train.multi_scale.sizes: expected two or more multiples of {family.input_stride}, got {sizes}")


def make_callbacks(cfg: Config, workdir: Path, guard, append: bool, start_step: int, stage: int,
                   evaluation: CocoEvaluation | None, monitors, stage_epochs: tuple[int, int] = (0, 1),
                   ema: WeightEMA | None = None) -> list:
    """The callbacks of a stage, writing into ``workdir``. Every worker of a multi-worker run
    gets the same ones (their logs are the same, so they stop and change the rate together).
    ``stage_epochs``: the stage's ``(first, end)`` epoch indices (EarlyStopping waits for its
    first ``min_stage_fraction``; the plateau's patience scales with its evaluations); ``ema``:
    the run's :class:`WeightEMA` (placed before what evaluates or saves the average)."""
    t = cfg.train
    callbacks: list = [LearningRateLogger(), guard]
    if ema is not None:
        callbacks.append(ema)  # before what evaluates or saves the average
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
        AtomicCheckpoint(workdir / "checkpoints", t.checkpoint_keep, monitors.checkpoint.name, guard, {"stage": stage},
                         monitors.checkpoint.mode, ema),
    ]
    first, end = stage_epochs
    if monitors.plateau is not None:
        p, m = t.reduce_lr_on_plateau, monitors.plateau
        coco = evaluation is not None and m.name in evaluation.names()  # logged every eval.interval epochs
        evaluations = (end - first) // max(1, cfg.eval.interval) if coco else end - first
        patience = max(p.patience, math.ceil(p.patience_fraction * evaluations))
        callbacks.append(SmoothedPlateau(p.smoothing, monitor=m.name, mode=m.mode, factor=p.factor, patience=patience,
                                         min_lr=p.min_lr, verbose=1))
        log.info("ReduceLROnPlateau on %s%s: x%g after %d evaluations without improvement", m.name,
                 f" (moving average, smoothing {p.smoothing:g})" if p.smoothing else "", p.factor, patience)
    if monitors.early_stopping is not None:
        e, m = t.early_stopping, monitors.early_stopping
        wait = first + math.ceil(e.min_stage_fraction * (end - first))
        callbacks.append(keras.callbacks.EarlyStopping(monitor=m.name, mode=m.mode, patience=e.patience,
                                                       min_delta=e.min_delta, start_from_epoch=wait, verbose=1))
        log.info("EarlyStopping on %s: patience %d evaluations, counting from epoch %d (stage epochs %d-%d)",
                 m.name, e.patience, wait + 1, first + 1, end)
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


def _apply_changed_lr(model, cfg: Config, previous_lrs: list[float] | None, index: int, lr: float,
                      choice: OptimizerChoice) -> None:
    """Resuming mid-stage restores the optimizer's rate; a rate changed since (``--resume
    --lr X``) replaces it, and the log says so."""
    old = previous_lrs[index] if previous_lrs and index < len(previous_lrs) else None
    if old is None or old == lr:
        return
    schedule = cfg.train.schedule
    if schedule.decay == "constant" and not (schedule.warmup_steps or schedule.warmup_epochs):
        model.optimizer.learning_rate = lr * choice.rate_scale  # a schedule is rebuilt from the new rate already
    log.info("learning rate changed on resume: %g (the run had %g)", lr, old)


def _restore(model, checkpoint: Path, mid_stage: bool, strategy, ema: WeightEMA | None = None) -> None:
    """Resume: weights always; optimizer state too when the stage was interrupted; with
    ``ema``, the checkpoint's weights are the average and its ``.raw.npz`` the training weights."""
    if not checkpoint.is_file():
        raise WeightsError(f"{checkpoint}: checkpoint named in state.json is missing")
    if not mid_stage:
        assign(model, read_keras_archive(checkpoint), str(checkpoint))
        log.info("resumed weights from %s (new stage: fresh optimizer)", checkpoint)
    else:
        if not getattr(model.optimizer, "built", True):
            with strategy.scope():
                model.optimizer.build(model.trainable_variables)
        model.load_weights(str(checkpoint))
        if int(model.optimizer.iterations.numpy()) == 0:
            raise WeightsError(f"{checkpoint}: the optimizer state does not match this stage's trainable layers")
        log.info("resumed weights and optimizer state (step %d) from %s", int(model.optimizer.iterations.numpy()), checkpoint)
    raw = raw_weights_path(checkpoint)
    if ema is None:
        if raw.is_file():
            log.info("train.ema is off: training on from the averaged weights of %s", checkpoint)
        return
    ema.attach(model)
    if raw.is_file():
        weights, updates = WeightEMA.read_raw(raw)
        ema.restore(weights, updates)
        log.info("weight EMA restored (%d updates); training weights from %s", updates, raw)
