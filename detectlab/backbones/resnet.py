"""ResNet-50/101 (v1, Caffe style: stride on the first 1x1 of a block, convolutions with
bias), with the layer names of the Keras applications / keras-frcnn / matterport models
(``conv1``, ``bn_conv1``, ``res2a_branch2a``, ``bn2a_branch2a``, ``res2a_branch1`` ...), so
their ImageNet and COCO weight files load by name.

Returns ``{"C1": stride 4 after max-pool, "C2": 4, "C3": 8, "C4": 16, "C5": 32}``.
``train_bn=False`` freezes the batch-norm statistics (moving mean/variance always), the
default of the reference R-CNN models whose batches hold one or two images; each frozen
batch norm then runs folded into its convolution (:class:`ConvBatchNorm`; the two layers
keep their names and weights).
"""

from __future__ import annotations

from keras import layers

from detectlab.layers.conv_batch_norm import conv_bn
from detectlab.registry import BACKBONES

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _w(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def bottleneck(x, filters, stage: int, block: str, strides: int = 1, projection: bool = False, train_bn: bool = False):
    """One bottleneck block ``res{stage}{block}``: 1x1 (strided) -> 3x3 -> 1x1, plus shortcut."""
    f1, f2, f3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    y = conv_bn(x, f1, 1, conv + "2a", bn + "2a", train_bn, strides=strides)
    y = layers.Activation("relu", name=f"res{stage}{block}_branch2a_relu")(y)
    y = conv_bn(y, f2, 3, conv + "2b", bn + "2b", train_bn, padding="same")
    y = layers.Activation("relu", name=f"res{stage}{block}_branch2b_relu")(y)
    y = conv_bn(y, f3, 1, conv + "2c", bn + "2c", train_bn)
    if projection:
        x = conv_bn(x, f3, 1, conv + "1", bn + "1", train_bn, strides=strides)
    y = layers.Add(name=f"res{stage}{block}_add")([y, x])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def resnet_stage(x, stage: int, blocks: int, width: float = 1.0, strides: int = 2, train_bn: bool = False):
    """Stage ``stage`` (2..5): a projection block then ``blocks - 1`` identity blocks."""
    base = 64 * 2 ** (stage - 2)
    filters = (_w(base, width), _w(base, width), _w(4 * base, width))
    x = bottleneck(x, filters, stage, "a", strides, projection=True, train_bn=train_bn)
    for i in range(1, blocks):
        x = bottleneck(x, filters, stage, chr(ord("a") + i), train_bn=train_bn)
    return x


def resnet(images, depth: int = 50, width: float = 1.0, train_bn: bool = False, stages=None, stage5: bool = True) -> dict:
    blocks = tuple(stages or STAGE_BLOCKS[depth])
    x = layers.ZeroPadding2D(3, name="conv1_pad")(images)
    x = conv_bn(x, _w(64, width), 7, "conv1", "bn_conv1", train_bn, strides=2)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    features = {"C1": x}
    for stage, count in zip((2, 3, 4, 5), blocks):
        if stage == 5 and not stage5:
            break
        x = resnet_stage(x, stage, count, width, strides=1 if stage == 2 else 2, train_bn=train_bn)
        features[f"C{stage}"] = x
    return features


@BACKBONES.register("resnet50")
def resnet50(images, width: float = 1.0, train_bn: bool = False, stages=None, stage5: bool = True) -> dict:
    return resnet(images, 50, width, train_bn, stages, stage5)


@BACKBONES.register("resnet101")
def resnet101(images, width: float = 1.0, train_bn: bool = False, stages=None, stage5: bool = True) -> dict:
    return resnet(images, 101, width, train_bn, stages, stage5)
