"""Feature pyramid (matterport Mask R-CNN layer names): ``C2..C5`` -> ``P2..P6``.

Top-down: ``fpn_c5p5`` (1x1), then for ``k = 4, 3, 2``: ``fpn_p{k+1}upsampled`` (nearest x2)
+ ``fpn_c{k}p{k}`` (1x1) -> ``fpn_p{k}add``; each ``P2..P5`` is smoothed by a 3x3
``fpn_p{k}``; ``P6`` (``fpn_p6``) subsamples ``P5`` by 2 (the RPN's extra level).
All ``channels`` wide (256). Strides 4, 8, 16, 32, 64.
"""

from __future__ import annotations

from keras import layers

from detectlab.layers.conv import AdaptiveConv2D


def fpn(features: dict, channels: int = 256) -> list:
    """``{"C2".."C5"}`` -> ``[P2, P3, P4, P5, P6]``."""
    top = AdaptiveConv2D(channels, 1, name="fpn_c5p5")(features["C5"])
    merged = {5: top}
    for k in (4, 3, 2):
        up = layers.UpSampling2D(2, name=f"fpn_p{k + 1}upsampled")(merged[k + 1])
        lateral = AdaptiveConv2D(channels, 1, name=f"fpn_c{k}p{k}")(features[f"C{k}"])
        merged[k] = layers.Add(name=f"fpn_p{k}add")([up, lateral])
    pyramid = [AdaptiveConv2D(channels, 3, padding="same", name=f"fpn_p{k}")(merged[k]) for k in (2, 3, 4, 5)]
    pyramid.append(layers.MaxPooling2D(1, strides=2, name="fpn_p6")(pyramid[-1]))
    return pyramid
