"""The YOLOv3 detection heads (three scales for Darknet-53, two for tiny).

Outputs are raw convolutions ``(B, g, g, A * (5 + C))`` named ``yolo_output_L`` where
``L = 0`` is the coarsest scale (stride 32); decoding lives in ``detectlab.layers.yolo``.
Layers are created in Darknet ``.cfg`` order so ``.weights`` files load in sequence.
"""

from __future__ import annotations

from keras import layers

from detectlab.backbones.darknet import DarknetLayers, _width


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
