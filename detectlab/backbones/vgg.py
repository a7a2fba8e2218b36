"""VGG16 with the Keras applications layer names (``block1_conv1`` ... ``block5_conv3``), so
ImageNet weight files load by name. Returns ``{"C1": stride 2, ..., "C4": 16 (after
block5_conv3, no fifth pool), "C5": 32}``: keras-frcnn's base network is ``C4``."""

from __future__ import annotations

from keras import layers

from detectlab.layers.conv import AdaptiveConv2D
from detectlab.registry import BACKBONES

BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


@BACKBONES.register("vgg16")
def vgg16(images, width: float = 1.0, train_bn: bool = False, stages=None, stage5: bool = True) -> dict:
    x = images
    features = {}
    for b, (filters, convs) in enumerate(BLOCKS, start=1):
        for c in range(1, convs + 1):
            x = AdaptiveConv2D(max(1, int(round(filters * width))), 3, padding="same", activation="relu", name=f"block{b}_conv{c}")(x)
        if b < 5:
            x = layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)
            features[f"C{b}"] = x
        else:
            features["C4"] = x  # stride 16: the keras-frcnn base (block5 without its pool)
            if stage5:
                features["C5"] = layers.MaxPooling2D(2, strides=2, name="block5_pool")(x)
    return features
