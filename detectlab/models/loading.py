"""Build a model from a recipe and a weights file (for evaluation / inference), with what
the file states about its network (:func:`adopt_file_settings`)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from detectlab.config import Config
from detectlab.data.records import DetectionDataset
from detectlab.errors import ConfigError
from detectlab.registry import MODELS
from detectlab.utils import log
from detectlab.weights.formats import FileSettings, file_settings, is_darknet_file, load_weights
from detectlab.weights.report import LoadReport

# settings that make another network (other layers, other shapes): a recipe that differs from
# the file there is the wrong recipe, an error; other settings the file states replace the recipe's
ARCHITECTURE = ("backbone", "width", "darknet_blocks", "resnet_stages", "fpn_channels", "fc_size", "pool_size",
                "mask_pool_size")


def adopt_file_settings(cfg: Config, settings: FileSettings, training: bool = False) -> Config:
    """``cfg`` with the ``model`` values ``settings`` states (anchors, masks, input size,
    class count, box coding, ...) in place of the recipe's, said in one log line.

    A recipe with another architecture than the file's, or a value set on the command line
    (``--set``) that contradicts the file, is a ``ConfigError``; the input size given on the
    command line is kept (a network runs at any multiple of its stride). When ``training``,
    the class count comes from the data, not the file."""
    m = cfg.model
    fields = {f.name for f in dataclasses.fields(m)}
    changes, said = {}, []
    for key, value in settings.model.items():
        if key not in fields or (training and key == "num_classes"):
            continue
        current = getattr(m, key)
        if _same(current, value):
            continue
        if f"model.{key}" in cfg.set_by_user:
            if key == "image_size":
                log.info("%s was trained at %s px; running at model.image_size %s as set", settings.source, value, current)
                continue
            raise ConfigError(f"model.{key}={_short(current)} contradicts {settings.source} ({key} {_short(value)}): "
                              "the weights were trained with the file's value; drop the --set")
        if key in ARCHITECTURE and current is not None:
            raise ConfigError(f"the recipe builds model.{key} {_short(current)} but {settings.source} is a network with "
                              f"{key} {_short(value)}: use a recipe for that network")
        changes[key] = value
        said.append(f"model.{key} {_short(value)} (recipe: {'not set' if current is None else _short(current)})")
    for note in settings.notes:
        log.info("%s", note)
    if not changes:
        return cfg
    log.info("from %s: %s", settings.source, "; ".join(said))
    return dataclasses.replace(cfg, model=dataclasses.replace(m, **changes))


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        try:
            x, y = np.asarray(a, float), np.asarray(b, float)
        except (TypeError, ValueError):
            return list(a) == list(b)
        return x.shape == y.shape and bool(np.allclose(x, y))
    return a == b


def _short(value) -> str:
    text = str(value).replace(" ", "")
    return text if len(text) <= 60 else text[:57] + "..."


class LoadedModel(NamedTuple):
    model: object  # the Keras model
    cfg: Config  # the recipe as the weights file made it (its input size is the one to predict at)
    report: LoadReport | None  # what the weights load did (None without weights)


def model_from_config(cfg: Config, weights: str | None, dataset: DetectionDataset | None = None,
                      exclude: str | None = None, cfg_file=None):
    """The recipe's model with ``weights`` loaded (:func:`model_and_config`)."""
    return model_and_config(cfg, weights, dataset, exclude, cfg_file).model


def model_and_config(cfg: Config, weights: str | None, dataset: DetectionDataset | None = None,
                     exclude: str | None = None, cfg_file=None, num_classes: int | None = None) -> LoadedModel:
    """The recipe's model with ``weights`` loaded (all layers must be found), the recipe as the
    file made it, and the load's report.

    The network follows what the file states (its ``.cfg``, a checkpoint's own settings); the
    class count comes from ``num_classes`` (output layers of another count are then left out
    of the load), ``model.num_classes``, the file, or ``dataset``; class names from ``dataset``,
    the file, or COCO's 80 names for an 80-class network."""
    settings = file_settings(weights, cfg_file) if weights else FileSettings("")
    cfg = adopt_file_settings(cfg, settings, training=num_classes is not None)
    num_classes = num_classes or cfg.model.num_classes or (dataset.num_classes if dataset is not None else None)
    if num_classes is None and weights and is_darknet_file(weights):
        num_classes = _darknet_classes(cfg, weights)
    if num_classes is None:
        raise ConfigError("model.num_classes is not set and the weights file does not say: pass --set model.num_classes=N "
                          "(or the file's Darknet .cfg with --cfg)")
    if dataset is not None and dataset.num_classes != num_classes:
        raise ConfigError(
            f"the model has {num_classes} classes but {dataset.annotation_file} has {dataset.num_classes} categories"
        )
    family = MODELS.get(cfg.model.family)
    family.check(cfg.model)
    model = family.build(cfg, num_classes, None, _classes(dataset, settings, num_classes))
    report = None
    if weights:
        report = load_weights(model, weights, exclude, cfg_file)
        if (report.missing or report.excluded) and not exclude:
            log.warning("%s: %s", weights, report.summary())
        else:
            log.info("%s: %s", weights, report.summary())
    return LoadedModel(model, dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=num_classes)), report)


def _classes(dataset, settings: FileSettings, num_classes: int):
    """``(class names, category ids)`` of a model built for inference, or None."""
    from detectlab.data.class_names import COCO_CATEGORY_IDS, COCO_CLASS_NAMES

    if dataset is not None:
        return dataset.class_names, dataset.category_ids
    if settings.class_names and len(settings.class_names) == num_classes:
        return settings.class_names, settings.category_ids
    if num_classes == len(COCO_CLASS_NAMES):
        log.info("80 classes: COCO's names and category ids (--class-names FILE for others)")
        return COCO_CLASS_NAMES, COCO_CATEGORY_IDS
    return None


def _darknet_classes(cfg: Config, weights) -> int | None:
    """The class count of a Darknet file without a ``.cfg``, from its size (a 1-class probe model)."""
    from detectlab.weights.darknet import darknet_class_count

    probe = MODELS.get(cfg.model.family).build(cfg, 1, None)
    return darknet_class_count(probe, weights)


def saved_class_names(weights) -> list[str] | None:
    """The class names a checkpoint or one of our ``.h5`` files was saved with (None otherwise)."""
    from detectlab.weights.by_name import saved_model_config

    if not weights or not str(weights).endswith((".keras", ".h5", ".hdf5")):
        return None
    saved = saved_model_config(weights)
    return saved["config"].get("class_names") if saved else None
