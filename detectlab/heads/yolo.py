"""The YOLOv3 detection heads (three scales for Darknet-53, two for tiny).

Outputs are raw convolutions ``(B, g, g, A * (5 + C))`` named ``yolo_output_L`` where
``L = 0`` is the coarsest scale (stride 32); decoding lives in ``detectlab.layers.yolo``.
Layers are created in Darknet ``.cfg`` order so ``.weights`` files load in sequence.
"""

from __future__ import annotations

import math

import numpy as np
from keras import layers

from detectlab.backbones.darknet import DarknetLayers, _width

# Prior probabilities fresh output convolutions start from (their biases), so the first
# predictions are "almost nothing here" instead of objectness 0.5 at every anchor, as
# RetinaNet (pi = 0.01) and the YOLOv5 / Ultralytics heads start theirs.
OBJECTNESS_PRIOR = 0.01
# class prior 0.6 / (C - 0.99): the Ultralytics head's rule (about 1/C for many classes, high
# for one class, whose label is then always right)
CLASS_PRIOR_MASS = 0.6


def prior_biases(num_anchors: int, num_classes: int) -> np.ndarray:
    """``(A * (5 + C),) float32`` biases of a fresh output convolution: 0 for ``tx, ty, tw,
    th`` (centred, anchor-sized boxes), ``logit(OBJECTNESS_PRIOR)`` for objectness and
    ``logit(min(0.99, CLASS_PRIOR_MASS / (C - 0.99)))`` for each class."""
    def logit(p):
        return math.log(p / (1.0 - p))

    per_anchor = np.zeros(5 + num_classes, np.float32)
    per_anchor[4] = logit(OBJECTNESS_PRIOR)
    per_anchor[5:] = logit(min(0.99, CLASS_PRIOR_MASS / (num_classes - 0.99)))
    return np.tile(per_anchor, num_anchors)


def set_prior_biases(output_conv, num_anchors: int, num_classes: int) -> None:
    """Give a freshly built ``yolo_output_L`` convolution its :func:`prior_biases`."""
    kernel, _ = output_conv.get_weights()
    output_conv.set_weights([kernel, prior_biases(num_anchors, num_classes)])


def yolov3_head(features: dict, builder: DarknetLayers, num_anchors: list[int], num_classes: int, width: float = 1.0) -> list:
    """Three-scale head on ``C5, C4, C3`` (the reference ``make_last_layers`` chain)."""
    outputs = []
    x = features["C5"]
    for level, (skip, channels) in enumerate(((None, 512), ("C4", 256), ("C3", 128))):
        n = _width(channels, width)
        if skip is not None:
            x = builder.conv_bn_leaky(x, n, 1, prefix="yolo")
            x = layers.UpSampling2D(2, name=f"yolo_upsample_{level}")(x)
            x = layers.Concatenate(name=f"yolo_concat_{level}")([x, features[skip]])
        for kernel in (1, 3, 1, 3, 1):
            x = builder.conv_bn_leaky(x, n if kernel == 1 else 2 * n, kernel, prefix="yolo")
        y = builder.conv_bn_leaky(x, 2 * n, 3, prefix="yolo")
        outputs.append(builder.conv_output(y, num_anchors[level] * (5 + num_classes), name=f"yolo_output_{level}"))
    return outputs


def yolov3_tiny_head(features: dict, builder: DarknetLayers, num_anchors: list[int], num_classes: int, width: float = 1.0) -> list:
    """Two-scale tiny head on ``C5`` and ``C4``."""
    x = builder.conv_bn_leaky(features["C5"], _width(256, width), 1, prefix="yolo")
    y = builder.conv_bn_leaky(x, _width(512, width), 3, prefix="yolo")
    out0 = builder.conv_output(y, num_anchors[0] * (5 + num_classes), name="yolo_output_0")
    x = builder.conv_bn_leaky(x, _width(128, width), 1, prefix="yolo")
    x = layers.UpSampling2D(2, name="yolo_upsample_1")(x)
    x = layers.Concatenate(name="yolo_concat_1")([x, features["C4"]])
    y = builder.conv_bn_leaky(x, _width(256, width), 3, prefix="yolo")
    out1 = builder.conv_output(y, num_anchors[1] * (5 + num_classes), name="yolo_output_1")
    return [out0, out1]
