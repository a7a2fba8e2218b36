"""Build a model from a recipe and load weights into it (for evaluation / inference)."""

from __future__ import annotations

from pathlib import Path

from detectlab.config import Config
from detectlab.data.records import DetectionDataset
from detectlab.errors import ConfigError, WeightsError
from detectlab.registry import MODELS
from detectlab.utils import log
from detectlab.weights.formats import load_weights


def model_from_config(cfg: Config, weights: str | None, dataset: DetectionDataset | None = None, exclude: str | None = None):
    """The recipe's model with ``weights`` loaded (all layers must be found)."""
    num_classes = cfg.model.num_classes or (dataset.num_classes if dataset is not None else None)
    if num_classes is None:
        raise ConfigError("model.num_classes is not set: pass --set model.num_classes=N or a dataset")
    if dataset is not None and dataset.num_classes != num_classes:
        raise ConfigError(
            f"the model has {num_classes} classes but {dataset.annotation_file} has {dataset.num_classes} categories"
        )
    family = MODELS.get(cfg.model.family)
    family.check(cfg.model)
    classes = (dataset.class_names, dataset.category_ids) if dataset is not None else None
    model = family.build(cfg, num_classes, None, classes)
    if weights and classes is None and Path(weights).suffix == ".keras":
        _adopt_saved_classes(model, weights)
    if weights:
        report = load_weights(model, weights, exclude)
        if report.missing and not exclude:
            log.warning("%s: %s", weights, report.summary())
        else:
            log.info("%s: %s", weights, report.summary())
    return model


def _saved_model_config(checkpoint) -> dict:
    import json
    import zipfile

    from detectlab.weights.by_name import check_keras_archive

    check_keras_archive(checkpoint)
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            config = json.loads(archive.read("config.json")).get("config", {})
    except (ValueError, AttributeError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{checkpoint}: config.json of this .keras archive is not a Keras model config ({exc})") from None
    return config if isinstance(config, dict) else {}


def saved_class_names(weights) -> list[str] | None:
    """The class names a ``.keras`` checkpoint was trained on (None for other files)."""
    if not weights or Path(weights).suffix != ".keras":
        return None
    return _saved_model_config(weights).get("class_names")


def _adopt_saved_classes(model, checkpoint) -> None:
    """Take class names / category ids from a checkpoint's saved model config."""
    config = _saved_model_config(checkpoint)
    if config.get("class_names") and len(config["class_names"]) == model.num_classes:
        model._init_classes(model.num_classes, config["class_names"], config.get("category_ids"))
