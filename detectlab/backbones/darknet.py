"""Darknet-53 and the YOLOv3-tiny body (Keras functional, reference layer structure).

Every convolution is ``Conv2D`` (no bias, L2 kernel regulariser) + ``BatchNormalization``
+ ``LeakyReLU(0.1)``; stride-2 convolutions pad top-left only, like Darknet. Layers are
named ``<prefix>_conv_NNN`` / ``_bn_NNN`` / ``_leaky_NNN`` where ``NNN`` is the position of
the convolution in the Darknet ``.cfg`` file, which is the order of a ``.weights`` file.
"""

from __future__ import annotations

import keras
from keras import layers

from detectlab.layers.batch_norm import FusedBatchNormalization
from detectlab.layers.conv import AdaptiveConv2D
from detectlab.layers.regularizers import L2
from detectlab.registry import BACKBONES


class DarknetLayers:
    """Creates Darknet convolution blocks, numbering them in ``.cfg`` order."""

    def __init__(self, l2: float = 5e-4):
        self.l2 = l2
        self.index = 0

    def conv_bn_leaky(self, x, filters: int, kernel: int, strides: int = 1, prefix: str = "darknet"):
        i = self.index
        self.index += 1
        if strides == 2:
            x = layers.ZeroPadding2D(((1, 0), (1, 0)), name=f"{prefix}_pad_{i:03d}")(x)
        x = AdaptiveConv2D(
            filters,
            kernel,
            strides=strides,
            padding="valid" if strides == 2 else "same",
            use_bias=False,
            kernel_regularizer=L2(self.l2) if self.l2 else None,
            name=f"{prefix}_conv_{i:03d}",
        )(x)
        x = FusedBatchNormalization(epsilon=1e-3, name=f"{prefix}_bn_{i:03d}")(x)
        return layers.LeakyReLU(negative_slope=0.1, name=f"{prefix}_leaky_{i:03d}")(x)

    def conv_output(self, x, filters: int, prefix: str = "yolo", name: str | None = None):
        """A linear 1x1 convolution with bias (the detection outputs)."""
        i = self.index
        self.index += 1
        return AdaptiveConv2D(
            filters,
            1,
            padding="same",
            # small initial weights (RetinaNet's std 0.01), so a fresh output starts near its prior biases
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            kernel_regularizer=L2(self.l2) if self.l2 else None,
            name=name or f"{prefix}_conv_{i:03d}",
        )(x)


def _width(channels: int, multiplier: float) -> int:
    return max(1, int(round(channels * multiplier)))


@BACKBONES.register("darknet53")
def darknet53(images, builder: DarknetLayers, width: float = 1.0, blocks=(1, 2, 8, 8, 4)) -> dict:
    """Darknet-53: returns ``{"C3": stride 8, "C4": stride 16, "C5": stride 32}`` features."""
    x = builder.conv_bn_leaky(images, _width(32, width), 3)
    features = {}
    for stage, repeats in enumerate(blocks):
        filters = _width(64 * 2**stage, width)
        x = builder.conv_bn_leaky(x, filters, 3, strides=2)
        for r in range(repeats):
            shortcut = x
            y = builder.conv_bn_leaky(x, filters // 2, 1)
            y = builder.conv_bn_leaky(y, filters, 3)
            x = layers.Add(name=f"darknet_add_{stage + 1}_{r}")([shortcut, y])
        if stage >= 2:
            features[f"C{stage + 1}"] = x
    return features


@BACKBONES.register("darknet_tiny")
def darknet_tiny(images, builder: DarknetLayers, width: float = 1.0) -> dict:
    """The YOLOv3-tiny body: ``{"C4": stride 16 (before the 5th pool), "C5": stride 32}``."""
    x = images
    for i, filters in enumerate((16, 32, 64, 128, 256)):
        x = builder.conv_bn_leaky(x, _width(filters, width), 3)
        if i < 4:
            x = layers.MaxPooling2D(2, 2, padding="same", name=f"darknet_pool_{i}")(x)
    c4 = x
    x = layers.MaxPooling2D(2, 2, padding="same", name="darknet_pool_4")(x)
    x = builder.conv_bn_leaky(x, _width(512, width), 3)
    x = layers.MaxPooling2D(2, 1, padding="same", name="darknet_pool_5")(x)
    x = builder.conv_bn_leaky(x, _width(1024, width), 3)
    return {"C4": c4, "C5": x}
