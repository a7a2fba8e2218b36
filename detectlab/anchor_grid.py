"""Anchor boxes (numpy; shared by the R-CNN target encoders and, as constants, the graph).

Anchors are ``y1, x1, y2, x2`` in input pixels, ordered by feature-map row, column, then
scale-major / ratio-minor (the keras-frcnn order: anchor ``k = scale_index * R + ratio_index``).
A ratio is a ``(w, h)`` multiplier pair: ``(1, 1)``, ``(1/sqrt 2, 2/sqrt 2)`` (tall),
``(2/sqrt 2, 1/sqrt 2)`` (wide), as in keras-frcnn; the area of every ratio equals
``scale**2``.
"""

from __future__ import annotations

import math

import numpy as np

REFERENCE_RATIOS = ((1.0, 1.0), (1 / math.sqrt(2), 2 / math.sqrt(2)), (2 / math.sqrt(2), 1 / math.sqrt(2)))


def anchor_shapes(scales, ratios) -> np.ndarray:
    """``(len(scales) * len(ratios), 2)`` anchor heights and widths."""
    return np.array([(s * r[1], s * r[0]) for s in scales for r in ratios], np.float32)


def grid_anchors(feature_hw, stride: float, scales, ratios, offset: float = 0.5) -> np.ndarray:
    """``(H * W * A, 4)`` anchors on the feature-map cells, cell ``i`` centred at
    ``(i + offset) * stride`` (0.5: the cell's centre; matterport uses 0)."""
    h, w = feature_hw
    shapes = anchor_shapes(scales, ratios)  # (A, 2) h, w
    cy = (np.arange(h, dtype=np.float32) + offset) * stride
    cx = (np.arange(w, dtype=np.float32) + offset) * stride
    cy, cx = np.meshgrid(cy, cx, indexing="ij")
    centres = np.stack([cy, cx], -1).reshape(-1, 1, 2)  # (H*W, 1, 2)
    half = shapes[None] / 2
    boxes = np.concatenate([centres - half, centres + half], -1)  # (H*W, A, 4)
    return boxes.reshape(-1, 4).astype(np.float32)
