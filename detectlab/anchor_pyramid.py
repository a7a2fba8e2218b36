"""FPN anchors for Mask R-CNN (numpy; shared by the RPN target encoder and ``FpnProposals``).

Matterport layout: one scale per pyramid level, each ratio a ``width / height`` factor
(``h = scale / sqrt(r)``, ``w = scale * sqrt(r)``, so ``0.5`` is tall and every ratio has area
``scale**2``). Order: **level-major** (P2 .. P6), then feature-map cell **row-major**, then
**ratio** (anchor ``i`` of a level = ``(row * cols + col) * len(ratios) + ratio_index``).
Grid size per level is ``ceil(image_size / stride)`` sampled every ``anchor_stride`` cells.

Cell centres: matterport puts the anchor of cell ``(i, j)`` at ``(i * stride, j * stride)``
(``offset = 0``, the default, so RPN weights converted from matterport decode the same way);
``offset = 0.5`` centres anchors on the cells like :func:`detectlab.anchor_grid.grid_anchors`.
Boxes are ``y1, x1, y2, x2``; normalised boxes are the pixel boxes divided by ``image_size``
(matterport's ``norm_boxes`` divides by ``size - 1`` after shifting ``y2, x2`` by one pixel;
we keep the framework's ``/ image_size`` convention).
"""

from __future__ import annotations

import math

import numpy as np

from detectlab.anchor_grid import grid_anchors

FPN_STRIDES = (4, 8, 16, 32, 64)
FPN_SCALES = (32, 64, 128, 256, 512)
FPN_RATIOS = (0.5, 1.0, 2.0)


def _cells(image_size: int, stride: int, anchor_stride: int) -> int:
    """Anchor rows (= columns) of one level: every ``anchor_stride``-th of ``ceil(size / stride)`` cells."""
    return len(range(0, int(math.ceil(image_size / stride)), anchor_stride))


def level_anchors(image_size: int, stride: int, scale: float, ratios, anchor_stride: int = 1,
                  offset: float = 0.0) -> np.ndarray:
    """``(rows * cols * len(ratios), 4)`` pixel anchors of one level (row, col, ratio order):
    :func:`detectlab.anchor_grid.grid_anchors` with one scale and ``(w, h)`` = ``(sqrt r, 1 / sqrt r)``."""
    cells = _cells(image_size, stride, anchor_stride)
    return grid_anchors((cells, cells), stride * anchor_stride, [scale], ratio_pairs(ratios), offset / anchor_stride)


def ratio_pairs(ratios) -> list[tuple[float, float]]:
    """matterport's ``w / h`` ratios as :mod:`detectlab.anchor_grid`'s ``(w, h)`` multipliers."""
    return [(math.sqrt(r), 1.0 / math.sqrt(r)) for r in ratios]


def pyramid_anchors(image_size: int, strides=FPN_STRIDES, scales=FPN_SCALES, ratios=FPN_RATIOS,
                    anchor_stride: int = 1, offset: float = 0.0):
    """All levels' anchors: ``(pixels (N, 4), normalised (N, 4))``, level-major order.

    ``strides`` and ``scales`` pair up (one scale per level)."""
    if len(strides) != len(scales):
        raise ValueError(f"one scale per level: got {len(strides)} strides and {len(scales)} scales")
    pixels = np.concatenate([level_anchors(image_size, s, sc, ratios, anchor_stride, offset)
                             for s, sc in zip(strides, scales)])
    return pixels, (pixels / np.float32(image_size)).astype(np.float32)


def anchors_per_level(image_size: int, strides=FPN_STRIDES, num_ratios: int = len(FPN_RATIOS),
                      anchor_stride: int = 1) -> list[int]:
    """Number of anchors of each level (to split the flat anchor axis by level)."""
    return [_cells(image_size, s, anchor_stride) ** 2 * num_ratios for s in strides]
