"""ImageNet backbones from Keras' published application weight files.

``model.backbone_weights: imagenet`` loads, into a VGG16 / ResNet-50 / ResNet-101 backbone,
the file ``keras.applications`` itself uses (``include_top=False``), fetched once by
``keras.utils.get_file`` into the Keras cache (``$KERAS_HOME/models``, default
``~/.keras/models``). A file already there is used as it is (copy it there on a machine
without internet); offline and absent is a one-line error naming the file and the folder.

- VGG16: the layer names are ours (``block1_conv1`` ...): loaded by name.
- ResNet: Keras' files name layers ``conv1_conv``, ``conv2_block1_1_conv``,
  ``conv2_block1_0_bn`` ... and use batch-norm epsilon 1.001e-5; they are renamed to the
  Caffe names we share with matterport / keras-frcnn (``conv1``, ``res2a_branch2a``,
  ``bn2a_branch1`` ...) and the epsilon difference is folded into ``gamma``
  (:mod:`detectlab.weights.batch_norm_fold`), so with frozen batch norms (the R-CNN default)
  every convolution block computes what Keras' does. Older files of the same name (Keras
  before 2.2, what matterport downloaded) already carry Caffe names and epsilon 1e-3: loaded
  by name as they are.

One difference is structural, not in the weights: our stem max-pools with ``same`` padding
(matterport's layout), Keras' pads one pixel each side first, so the stride-4 grids are
offset by one pixel; every stage after it is the same function.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from detectlab.errors import WeightsError
from detectlab.utils import named_layers
from detectlab.weights.batch_norm_fold import gamma_for_epsilon
from detectlab.weights.by_name import assign, read_h5
from detectlab.weights.report import LoadReport

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
# backbone -> (file name, folder under BASE_URL, md5 of the published file)
IMAGENET_FILES = {
    "vgg16": ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16/", "6d6bbae143d832006294945121d1f1fc"),
    "resnet50": ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet/", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet/", "88cf7a10940856eca736dc7b7e228a21"),
}
KERAS_RESNET_EPSILON = 1.001e-5
_KERAS_RESNET = re.compile(r"conv(\d)_block(\d+)_(\d)_(conv|bn)$")


def keras_cache_dir() -> Path:
    """Where ``keras.utils.get_file`` keeps application weights."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def imagenet_file(backbone: str) -> Path:
    """The cached ImageNet file of ``backbone``, downloaded into the Keras cache if absent."""
    if backbone not in IMAGENET_FILES:
        raise WeightsError(
            f"model.backbone_weights: ImageNet weights exist for {', '.join(IMAGENET_FILES)}, not {backbone} "
            "(YOLO: --weights darknet53.conv.74)"
        )
    name, folder, md5 = IMAGENET_FILES[backbone]
    cache = keras_cache_dir()
    if (cache / name).is_file():
        return cache / name
    import keras

    try:
        return Path(keras.utils.get_file(name, BASE_URL + folder + name, cache_subdir="models", cache_dir=str(cache.parent), file_hash=md5))
    except Exception as exc:  # offline, proxy, disk full: one line naming the file and folder
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{name}: not in the Keras cache {cache} and cannot be downloaded ({reason}); copy the file there") from None


def caffe_name(keras_name: str) -> str:
    """Keras' ResNet layer name -> ours (``conv3_block2_1_conv`` -> ``res3b_branch2a``)."""
    if keras_name == "conv1_conv":
        return "conv1"
    if keras_name == "conv1_bn":
        return "bn_conv1"
    m = _KERAS_RESNET.match(keras_name)
    if not m:
        return keras_name
    stage, block, conv, kind = m.groups()
    branch = "1" if conv == "0" else "2" + "abc"[int(conv) - 1]
    return f"{'res' if kind == 'conv' else 'bn'}{stage}{chr(ord('a') + int(block) - 1)}_branch{branch}"


def is_keras_resnet(weights: dict) -> bool:
    """True for Keras' own ResNet naming (``conv1_conv``, ``conv2_block1_1_conv`` ...)."""
    return any(_KERAS_RESNET.match(name) for name in weights)


def keras_resnet_to_ours(weights: dict[str, list[np.ndarray]], model) -> dict[str, list[np.ndarray]]:
    """Keras' ResNet ``{layer name: arrays}`` renamed to ours, BN epsilon folded for ``model``."""
    layers = {layer.name: layer for layer in named_layers(model)}
    out = {}
    for name, arrays in weights.items():
        ours = caffe_name(name)
        bn = layers.get(ours)
        if name.endswith("_bn") and bn is not None and len(arrays) == 4:
            gamma, beta, mean, var = arrays
            arrays = [gamma_for_epsilon(gamma, var, KERAS_RESNET_EPSILON, bn.epsilon), beta, mean, var]
        out[ours] = arrays
    return out


def read_imagenet(path, model) -> dict[str, list[np.ndarray]]:
    """``{our layer name: arrays}`` from a Keras application file (VGG16 and old Caffe-named
    ResNet files as they are)."""
    weights = read_h5(path)
    return keras_resnet_to_ours(weights, model) if is_keras_resnet(weights) else weights


def load_imagenet_backbone(model, backbone: str) -> LoadReport:
    """Load ``backbone``'s ImageNet file into ``model`` (its other layers are left as they are)."""
    path = imagenet_file(backbone)
    return assign(model, read_imagenet(path, model), str(path))
