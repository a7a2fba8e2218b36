"""``load_weights``: one entry point for every weights file a user brings, by file type, and
the one help text that lists them for the command-line tools.

- ``.keras``: our checkpoints, by layer name (:mod:`detectlab.weights.by_name`);
- ``.h5`` / ``.hdf5``: the classic Keras by-name layout (:mod:`detectlab.weights.by_name`);
  keras-yolo3 files (auto-named ``conv2d_N``) by creation order
  (:mod:`detectlab.weights.keras_yolo3`); keras-frcnn's unnamed VGG ``fc1``/``fc2`` wrappers
  (:mod:`detectlab.weights.keras_frcnn`) and Keras' application ResNet files
  (:mod:`detectlab.weights.imagenet`) renamed to ours first;
- ``.weights`` (and ``darknet53.conv.74``): Darknet files, by layer order
  (:mod:`detectlab.weights.darknet`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from detectlab.errors import WeightsError
from detectlab.utils import named_layers
from detectlab.weights.by_name import assign, read_h5, read_keras_archive, saved_model_config
from detectlab.weights.darknet import load_darknet_weights
from detectlab.weights.darknet_cfg import cfg_beside, published_file, read_darknet_cfg
from detectlab.weights.imagenet import is_keras_resnet, keras_resnet_to_ours, load_imagenet_backbone
from detectlab.weights.report import LoadReport

WEIGHTS_HELP = (
    "initial weights, any of: a detectlab .keras checkpoint or by-name .h5; "
    "Darknet .weights (yolov3.weights, yolov3-tiny.weights, backbone-only darknet53.conv.74; "
    "Darknet's batch norm reproduced exactly); keras-yolo3 .h5 (convert.py's yolo.h5 or train.py's "
    "trained_weights_*.h5, loaded by layer order); keras-frcnn model_frcnn.hdf5 (VGG16 / ResNet-50) and "
    "matterport mask_rcnn_*.h5 (by layer name); Keras application files "
    "(vgg16/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5). "
    "Darknet and keras-yolo3 files of another class count load all but the output convolutions; "
    "for by-name files use --exclude. ImageNet backbones also via --set model.backbone_weights=imagenet"
)


CFG_HELP = (
    "the Darknet .cfg of a --weights .weights file (default: the .cfg with the same stem beside it): its anchors, "
    "masks, classes and input size replace the recipe's, and its layers are checked against the model"
)


def is_darknet_file(path) -> bool:
    """A Darknet ``.weights`` file (also a backbone file such as ``darknet53.conv.74``)."""
    suffix = Path(path).suffix
    return suffix == ".weights" or re.fullmatch(r"\.\d+", suffix) is not None


@dataclass
class FileSettings:
    """What a weights file says about the network it holds, for the recipe to follow.

    ``model``: recipe ``model`` fields the weights were trained with (``anchors``,
    ``anchor_masks``, ``backbone``, ``image_size``, ``num_classes``, ...; only those the file
    states); ``class_names`` / ``category_ids`` when the file names its classes; ``notes``:
    why a value is what it is (a file known by its checksum); ``cfg_file``: a Darknet
    file's ``.cfg``, which the loader checks the file against."""

    source: str
    model: dict = field(default_factory=dict)
    class_names: list[str] | None = None
    category_ids: list[int] | None = None
    notes: list[str] = field(default_factory=list)
    cfg_file: Path | None = None


def file_settings(path, cfg_file=None) -> FileSettings:
    """What ``path`` states about its network: a Darknet file through its ``.cfg`` (``cfg_file``
    or the same stem beside it) and, for published files known by checksum, the settings they
    were trained with; a detectlab ``.keras`` / ``.h5`` through its saved model config; a
    keras-yolo3 ``.h5`` through its output convolutions (the class count)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if is_darknet_file(path):
        return _darknet_settings(path, cfg_beside(path, cfg_file))
    if cfg_file:
        raise WeightsError(f"--cfg {cfg_file}: a Darknet .cfg goes with a Darknet .weights file, not {path.name}")
    if path.suffix == ".keras" or path.suffix in (".h5", ".hdf5"):
        config = saved_model_config(path)
        if config is not None:
            return _detectlab_settings(path, config)
    if path.suffix in (".h5", ".hdf5"):
        from detectlab.weights.keras_yolo3 import keras_yolo3_class_count

        classes = keras_yolo3_class_count(path)
        if classes is not None:
            return FileSettings(str(path), {"num_classes": classes})
    return FileSettings(str(path))


def _darknet_settings(path: Path, cfg: Path | None) -> FileSettings:
    settings = FileSettings(str(path) if cfg is None else f"{path} + {cfg.name}", cfg_file=cfg)
    if cfg is not None:
        settings.model = read_darknet_cfg(cfg).model_settings()
    known = published_file(path)
    if known is not None:
        if settings.model.get("anchor_masks", known.anchor_masks) != known.anchor_masks:
            settings.notes.append(f"{path.name} is {known.name} (MD5): anchor masks {known.anchor_masks}, not the "
                                  f".cfg's {settings.model['anchor_masks']}, because {known.why}")
        settings.model = {**known.settings, **settings.model, "anchor_masks": known.anchor_masks}
    return settings


def _detectlab_settings(path: Path, saved: dict) -> FileSettings:
    """A checkpoint's or converted file's own network settings (``saved``: its model config)."""
    from detectlab.registry import MODELS

    config = saved.get("config", {})
    families = [MODELS.get(n) for n in MODELS.names()]
    family = next((f for f in families if f.model_class is not None and f.model_class.__name__ == saved.get("class_name")), None)
    if family is None:
        return FileSettings(str(path))
    fields = (*family.config_class.TRAINED_WITH, "num_classes", "image_size")
    model = {k: config[k] for k in fields if k in config}
    return FileSettings(str(path), model, config.get("class_names"), config.get("category_ids"))


def load_weights(model, path, exclude: str | None = None, cfg_file=None) -> LoadReport:
    """Load ``path`` into ``model``: by layer name, or by layer order for Darknet and
    keras-yolo3 files; ``exclude`` (a regex of layer names) is skipped. A Darknet file is
    checked against its ``.cfg`` (``cfg_file``, or the same stem beside it) when there is one."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if is_darknet_file(path):  # Darknet, also darknet53.conv.74
        cfg = cfg_beside(path, cfg_file)
        return load_darknet_weights(model, path, read_darknet_cfg(cfg) if cfg is not None else None)
    if path.suffix == ".keras":
        weights = read_keras_archive(path)
    elif path.suffix in (".h5", ".hdf5"):
        from detectlab.weights.keras_frcnn import name_vgg_fc_wrappers
        from detectlab.weights.keras_yolo3 import is_auto_named, load_keras_yolo3

        weights = read_h5(path)
        ours = [layer.name for layer in named_layers(model) if layer.weights]
        if is_auto_named(weights) and not any(name in weights for name in ours):
            return load_keras_yolo3(model, weights, str(path), exclude)  # keras-yolo3: by creation order
        weights = name_vgg_fc_wrappers(weights, [layer.name for layer in named_layers(model)])
        if is_keras_resnet(weights):  # a Keras application ResNet file: its names and BN epsilon
            weights = keras_resnet_to_ours(weights, model)
    else:
        raise WeightsError(f"{path}: unknown weights format (expected .keras, .h5, .hdf5 or Darknet .weights)")
    return assign(model, weights, str(path), exclude)


def load_backbone_weights(model, model_config) -> LoadReport:
    """``model_config.backbone_weights``: ``imagenet`` (Keras' application file of the
    backbone, :mod:`detectlab.weights.imagenet`) or any weights file :func:`load_weights` reads."""
    source = model_config.backbone_weights
    if source == "imagenet":
        return load_imagenet_backbone(model, getattr(model_config, "backbone", model_config.family))
    return load_weights(model, source)

