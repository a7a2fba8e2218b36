"""Typed configuration: dataclasses, strict YAML recipes and command-line overrides.

A recipe (``models/*.yaml``) has the sections ``model``, ``data``, ``augment``, ``loss``,
``train``, ``eval`` and ``predict``. The ``model`` section's dataclass depends on
``model.family`` (each family registers its own in ``MODELS``). A recipe may start with
``base: other.yaml`` to inherit another recipe (resolved relative to the file) and override
parts of it.

Parsing is strict: an unknown key or a value of the wrong type is a :class:`ConfigError`
naming the file and the dotted key, e.g.
``models/x.yaml: train.epoch: unknown key (did you mean 'epochs'?)``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from detectlab.errors import ConfigError

# "auto": mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native bfloat16 (AMX /
# AVX512-BF16), float32 elsewhere (see detectlab.training.devices.resolve_precision)
Precision = Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"]


# ----------------------------------------------------------------------------- sections


@dataclass
class ShapesConfig:
    """The built-in synthetic dataset (see ``detectlab.data.shapes``)."""

    train: int = 800  # number of training images
    val: int = 100  # number of validation images
    size: int = 128  # image side in pixels
    seed: int = 0


@dataclass
class DataConfig:
    """Where the data is. ``train``/``val``: a COCO JSON file, a YOLO ``data.yaml`` or
    ``images/`` + ``labels/`` folder, a LabelMe folder, a CVAT XML, a Pascal VOC folder, a
    simple CSV (``path,x1,y1,x2,y2,class``), a VIA JSON, or the word ``shapes``."""

    train: str = "shapes"
    val: str | None = "shapes"
    format: Literal["auto", "coco", "voc", "csv", "via", "yolo", "labelme", "cvat"] = "auto"  # auto: from the path/contents
    train_split: str | None = None  # VOC ImageSets split / YOLO split of `train` (YOLO data.yaml: train)
    val_split: str | None = None  # VOC split / YOLO split of `val` (e.g. test; YOLO data.yaml: val)
    classes: list[str] | None = None  # class order for non-COCO formats (default: sorted names)
    images: str | None = None  # image folder of `train` (default: found next to the JSON)
    val_images: str | None = None
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    include_empty_images: bool = True  # images without annotations train as negatives
    # A box of zero size, or entirely outside its image: "error" stops with the annotation
    # id; "skip" drops it and logs the count. Boxes partly outside are clipped.
    invalid_boxes: Literal["error", "skip"] = "error"
    # Every image is checked before training (header, size, end marker; no full decode):
    # "error" stops at the first bad one with its path; "skip" leaves bad images out and
    # logs how many and which.
    bad_images: Literal["error", "skip"] = "error"
    # With `val` null: hold out this share of the training images (seeded) for validation.
    val_fraction: float = 0.0
    max_boxes: int = 100  # ground-truth boxes per image passed to in-graph losses


@dataclass
class AugmentConfig:
    """Training augmentation (albumentations). Values follow the YOLOv3 reference."""

    enabled: bool = True
    hflip: float = 0.5  # probability of a horizontal flip
    jitter: float = 0.3  # aspect-ratio jitter: w/h scaled by up to (1+j)/(1-j)
    scale: tuple[float, float] = (0.25, 2.0)  # random object scale relative to the canvas
    hue: float = 0.1  # hue shift, fraction of the colour circle
    saturation: float = 1.5  # saturation scaled within [1/s, s]
    value: float = 1.5  # brightness scaled within [1/v, v]


@dataclass
class LossConfig:
    """The loss terms (registered names in ``LOSSES``), their weights, and per-class weights
    for class terms.

    ``terms`` lists the family's terms (null: the reference's, e.g. ``yolo_xy_loss``,
    ``yolo_wh_loss``, ``yolo_confidence_loss``, ``yolo_class_loss``). ``box`` swaps the box
    terms for another box loss: ``giou``, ``diou`` or ``ciou`` (IoU family; YOLO and the
    R-CNN box heads), or the reference's (``xywh`` for YOLO, ``smooth_l1`` for R-CNN).
    ``class_weights`` is null, ``balanced`` (inverse class frequency in the training
    data), a list with one weight per class, or a mapping class name -> weight
    (classes not named keep weight 1).
    """

    terms: list[str] | None = None
    box: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    class_weights: Any = None
    label_smoothing: float = 0.0  # class targets smoothed by this amount (YOLO: 1 - e/2 and e/2)


@dataclass
class StageConfig:
    """One training stage: which layers train, for how many epochs, at which rate."""

    layers: str = "all"  # a preset of the model family, or a regex of trainable layer names
    epochs: int = 1
    lr: float | None = None  # None: train.lr
    name: str = ""


# "auto": max for AP/AR/accuracy names, min for losses (see detectlab.training.monitors)
MonitorMode = Literal["auto", "min", "max"]


@dataclass
class PlateauConfig:
    monitor: str | None = None  # None: train.monitor
    mode: MonitorMode = "auto"
    factor: float = 0.1
    patience: int = 3
    min_lr: float = 0.0


@dataclass
class EarlyStoppingConfig:
    monitor: str | None = None  # None: train.monitor
    mode: MonitorMode = "auto"
    patience: int = 10
    min_delta: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 10
    steps_per_epoch: int | None = None  # None: one pass over the training data
    validation_steps: int | None = None  # None: the whole validation split
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9  # SGD only
    clipnorm: float | None = None
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0  # linear warm-up from 0 to the stage's rate
    layers: str = "all"  # used when `stages` is empty
    stages: list[StageConfig] = field(default_factory=list)
    reduce_lr_on_plateau: PlateauConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    workers: int = 2
    use_multiprocessing: bool = True
    max_queue_size: int = 10
    precision: Precision = "float32"
    jit_compile: bool = False  # XLA; measured slower on CPU, useful on GPU
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"
    mirrored_devices: int = 0  # mirrored on CPU: split the CPU into N logical devices
    seed: int = 0
    checkpoint_keep: int = 3  # epoch checkpoints kept besides last and best
    # a logged name (e.g. val_AP50, val_loss) ranking best.keras, and the default of
    # early_stopping / reduce_lr_on_plateau; val_loss falls back to loss without validation
    monitor: str = "val_loss"
    monitor_mode: MonitorMode = "auto"
    tensorboard_update_freq: str = "batch"  # "batch", "epoch" or a number of batches
    verbose: int = 1  # 1: progress bar (one line per epoch when not on a terminal), 2: one line, 0: silent


@dataclass
class EvalConfig:
    score_threshold: float = 0.005  # low: mAP needs the whole precision/recall curve
    nms_threshold: float = 0.45
    max_detections: int = 100
    batch_size: int = 8
    after_training: bool = True  # evaluate best.keras on the validation split when training ends
    # COCO evaluation of the validation split during training, every N epochs (and at the
    # end of each stage); 0: off. Logs val_AP, val_AP50, val_AP75, per-class val_AP50_<name>
    # (and val_mask_AP, val_mask_AP50 with masks).
    interval: int = 1
    max_images: int | None = 500  # score at most the first N validation images per evaluation (null: all)
    tensorboard_images: int = 4  # validation images drawn (prediction | ground truth) per evaluation


@dataclass
class PredictConfig:
    score_threshold: float = 0.3
    nms_threshold: float = 0.45
    max_detections: int = 100


@dataclass
class ModelConfig:
    """Fields every model family has; each family subclasses it (``MODELS``)."""

    family: str = ""
    num_classes: int | None = None  # None: taken from the training data
    image_size: int = 416
    # backbone start for training: "imagenet" (Keras' application file for vgg16 / resnet50 /
    # resnet101, see detectlab.weights.imagenet) or a weights file loaded by name; --weights
    # (and a resumed checkpoint) load after it
    backbone_weights: str | None = None


@dataclass
class Config:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def stages(self) -> list[StageConfig]:
        """The training stages, with ``lr`` filled in; one stage when none are listed."""
        stages = self.train.stages or [
            StageConfig(layers=self.train.layers, epochs=self.train.epochs, name="train")
        ]
        return [
            dataclasses.replace(s, lr=self.train.lr if s.lr is None else s.lr, name=s.name or f"stage{i + 1}")
            for i, s in enumerate(stages)
        ]

    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages())

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | os.PathLike) -> None:
        from detectlab.utils import atomic_write_text

        atomic_write_text(path, self.to_yaml())


# ----------------------------------------------------------------------------- loading


def load_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    raw: dict | None = None,
) -> Config:
    """Read a recipe, apply ``key=value`` overrides and return a typed :class:`Config`."""
    source = str(path) if path is not None else "<config>"
    data = read_recipe(path) if path is not None else {}
    if raw:
        data = deep_merge(data, raw)
    for item in overrides or []:
        apply_override(data, item)
    return config_from_dict(data, source)


def read_recipe(path: str | os.PathLike, _seen: tuple[str, ...] = ()) -> dict:
    """Load YAML, following ``base:`` links (relative to the including file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if str(path.resolve()) in _seen:
        raise ConfigError(f"{path}: 'base' links form a cycle")
    from detectlab.utils import read_yaml

    data = read_yaml(path, ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is not None:
        parent = read_recipe(path.parent / base, _seen + (str(path.resolve()),))
        data = deep_merge(parent, data)
    return data


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(data: dict, item: str) -> None:
    """Apply ``section.key=value`` (value parsed as YAML) to a raw recipe dict."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=0.001")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {item!r}: value is not valid YAML") from None
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(data: dict, source: str = "<config>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping of sections")
    model_raw = data.get("model") or {}
    if not isinstance(model_raw, dict):
        raise ConfigError(f"{source}: model: expected a mapping")
    family = model_raw.get("family")
    if not family:
        raise ConfigError(f"{source}: model.family is required (one of: {', '.join(_families())})")
    from detectlab.registry import MODELS, RegistryError

    try:
        model_cls = MODELS.get(family).config_class
    except RegistryError as exc:
        raise ConfigError(f"{source}: model.family: {exc}") from None
    cfg = _build(Config, data, source, "", overrides={"model": model_cls})
    check_ranges(cfg, source)
    return cfg


# ----------------------------------------------------------------------------- ranges

def _at_least(low):
    return (lambda v: v >= low), f"at least {low}" if low else "0 or more"


_POSITIVE = (lambda v: v > 0), "a positive number"
_UNIT = (lambda v: 0 <= v <= 1), "in [0, 1]"
_FRACTION = (lambda v: 0 <= v < 1), "in [0, 1)"
_NOT_NEGATIVE = (lambda v: v >= 0), "0 or more"
_ONE = _at_least(1)

# The range of every numeric field (the same as the command-line flag setting it, where
# there is one), checked once the recipe is typed. Keys are "section.field"; list/dict
# entries are checked item by item ("train.stages.lr" covers every stage).
RANGES = {
    "model.num_classes": _ONE, "model.image_size": _ONE,
    # family fields (a family without the field is not affected)
    "model.width": _POSITIVE, "model.anchors": _POSITIVE, "model.anchor_masks": _at_least(0),
    "model.ignore_thresh": _UNIT, "model.darknet_blocks": _ONE, "model.resnet_stages": _ONE,
    "model.anchor_scales": _POSITIVE, "model.anchor_ratios": _POSITIVE, "model.anchor_stride": _ONE,
    "model.rpn_positive_iou": _UNIT, "model.rpn_negative_iou": _UNIT, "model.rpn_samples": _ONE,
    "model.rpn_regr_std": _POSITIVE, "model.classifier_regr_std": _POSITIVE, "model.proposals_pre_nms": _ONE,
    "model.proposals_nms": _UNIT, "model.proposals": _ONE, "model.proposals_training": _ONE,
    "model.proposals_inference": _ONE, "model.num_rois": _ONE, "model.train_rois": _ONE,
    "model.roi_fg_iou": _UNIT, "model.roi_bg_iou": _UNIT, "model.roi_positive_ratio": _UNIT,
    "model.pool_size": _ONE, "model.mask_pool_size": _ONE, "model.mini_mask": _ONE, "model.fc_size": _ONE,
    "model.fpn_channels": _ONE, "model.dropout": _FRACTION, "model.weight_decay": _NOT_NEGATIVE,
    "data.shapes.train": _ONE, "data.shapes.val": _at_least(0), "data.shapes.size": _at_least(32),
    "data.shapes.seed": _at_least(0), "data.max_boxes": _ONE, "data.val_fraction": _FRACTION,
    "augment.hflip": _UNIT, "augment.jitter": _FRACTION, "augment.scale": _POSITIVE, "augment.hue": _UNIT,
    "augment.saturation": _at_least(1), "augment.value": _at_least(1),
    "loss.weights": ((lambda v: not v < 0), "0 or more"),  # NaN passes: it is how tests trip the NaN guard
    "loss.label_smoothing": _FRACTION,
    "train.epochs": _ONE, "train.steps_per_epoch": _ONE, "train.validation_steps": _ONE, "train.batch_size": _ONE,
    "train.lr": _POSITIVE, "train.momentum": _FRACTION, "train.clipnorm": _POSITIVE, "train.warmup_steps": _at_least(0),
    "train.stages.epochs": _ONE, "train.stages.lr": _POSITIVE,
    "train.reduce_lr_on_plateau.factor": ((lambda v: 0 < v < 1), "in (0, 1)"),
    "train.reduce_lr_on_plateau.patience": _at_least(0), "train.reduce_lr_on_plateau.min_lr": _NOT_NEGATIVE,
    "train.early_stopping.patience": _at_least(0), "train.early_stopping.min_delta": _NOT_NEGATIVE,
    "train.workers": _at_least(0), "train.max_queue_size": _ONE, "train.mirrored_devices": _at_least(0),
    "train.seed": _at_least(0), "train.checkpoint_keep": _at_least(0), "train.verbose": ((lambda v: v in (0, 1, 2)), "0, 1 or 2"),
    "eval.score_threshold": _UNIT, "eval.nms_threshold": _UNIT, "eval.max_detections": _ONE, "eval.batch_size": _ONE,
    "predict.score_threshold": _UNIT, "predict.nms_threshold": _UNIT, "predict.max_detections": _ONE,
}


def check_ranges(cfg: Config, source: str = "<config>") -> None:
    """Raise ``ConfigError`` naming the first numeric value outside :data:`RANGES`."""

    def visit(value, key: str, where: str) -> None:
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                visit(getattr(value, f.name), f"{key}.{f.name}".lstrip("."), f"{where}.{f.name}".lstrip("."))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, key, f"{where}[{i}]")
        elif isinstance(value, dict):
            for name, item in value.items():
                visit(item, key, f"{where}.{name}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key in RANGES:
            accept, expected = RANGES[key]
            if not accept(value):
                raise ConfigError(f"{source}: {where}: expected {expected}, got {value!r}")

    visit(cfg, "", "")
    lo, hi = cfg.augment.scale
    if lo > hi:
        raise ConfigError(f"{source}: augment.scale: expected [low, high] with low <= high, got [{lo}, {hi}]")


def _families() -> list[str]:
    from detectlab.registry import MODELS

    return MODELS.names()


# ----------------------------------------------------------------------------- typing


def _build(cls: type, data: Any, source: str, prefix: str, overrides: dict | None = None) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f"; known: {', '.join(fields)}"
        raise ConfigError(f"{source}: {prefix}{key}: unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                kwargs[name] = _build((overrides or {}).get(name, hints[name]), {}, source, f"{prefix}{name}.")
            continue
        target = (overrides or {}).get(name, hints[name])
        kwargs[name] = _coerce(data[name], target, source, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, source, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):  # YAML reads 1e-3 as a string; accept numeric text
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{source}: {key}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected a string, got {_describe(value)}")
        return str(value)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {_describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: {key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, t, source, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {_describe(value)}")
        kt, vt = args or (Any, Any)
        return {_coerce(k, kt, source, key): _coerce(v, vt, source, f"{key}.{k}") for k, v in value.items()}
    raise ConfigError(f"{source}: {key}: unsupported type {tp}")  # a bug in a dataclass


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return f"{text[:40]}{'...' if len(text) > 40 else ''} ({type(value).__name__})"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
