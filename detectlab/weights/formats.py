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
from pathlib import Path

from detectlab.errors import WeightsError
from detectlab.utils import named_layers
from detectlab.weights.by_name import assign, read_h5, read_keras_archive
from detectlab.weights.darknet import load_darknet_weights
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


def load_weights(model, path, exclude: str | None = None) -> LoadReport:
    """Load ``path`` into ``model``: by layer name, or by layer order for Darknet and
    keras-yolo3 files; ``exclude`` (a regex of layer names) is skipped."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".weights" or re.fullmatch(r"\.\d+", path.suffix):  # Darknet, also darknet53.conv.74
        return load_darknet_weights(model, path)
    if path.suffix == ".keras":
        weights = read_keras_archive(path)
    elif path.suffix in (".h5", ".hdf5"):
        from detectlab.weights.imagenet import is_keras_resnet, keras_resnet_to_ours
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
