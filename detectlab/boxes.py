"""Box maths in numpy (loader side). In-graph TensorFlow versions: ``detectlab.layers.box_ops``.

Boxes are ``(..., 4)`` arrays of ``y1, x1, y2, x2`` unless a function says otherwise.
"""

from __future__ import annotations

import numpy as np


XY_ORDER = [1, 0, 3, 2]  # (dy, dx, dh, dw) <-> keras-frcnn's (tx, ty, tw, th): its own inverse


def box_area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, 4) x (M, 4) -> (N, M)`` intersection over union."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    y1 = np.maximum(a[:, None, 0], b[None, :, 0])
    x1 = np.maximum(a[:, None, 1], b[None, :, 1])
    y2 = np.minimum(a[:, None, 2], b[None, :, 2])
    x2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def shape_iou(wh_a: np.ndarray, wh_b: np.ndarray) -> np.ndarray:
    """IoU of boxes sharing a centre, from widths/heights: ``(N, 2) x (M, 2) -> (N, M)``."""
    wh_a = np.asarray(wh_a, np.float32).reshape(-1, 2)
    wh_b = np.asarray(wh_b, np.float32).reshape(-1, 2)
    inter = np.minimum(wh_a[:, None, 0], wh_b[None, :, 0]) * np.minimum(wh_a[:, None, 1], wh_b[None, :, 1])
    union = (wh_a[:, 0] * wh_a[:, 1])[:, None] + (wh_b[:, 0] * wh_b[:, 1])[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def encode_deltas(boxes: np.ndarray, gt: np.ndarray, std=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """Regression targets ``(dy, dx, dh, dw) / std`` taking ``boxes`` onto ``gt`` (same shape)."""
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    cy = boxes[..., 0] + 0.5 * h
    cx = boxes[..., 1] + 0.5 * w
    gh = gt[..., 2] - gt[..., 0]
    gw = gt[..., 3] - gt[..., 1]
    gcy = gt[..., 0] + 0.5 * gh
    gcx = gt[..., 1] + 0.5 * gw
    deltas = np.stack([(gcy - cy) / h, (gcx - cx) / w, np.log(gh / h), np.log(gw / w)], -1)
    return (deltas / np.asarray(std, np.float32)).astype(np.float32)


def decode_deltas(boxes: np.ndarray, deltas: np.ndarray, std=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """Inverse of :func:`encode_deltas`."""
    deltas = deltas * np.asarray(std, np.float32)
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    cy = boxes[..., 0] + 0.5 * h + deltas[..., 0] * h
    cx = boxes[..., 1] + 0.5 * w + deltas[..., 1] * w
    h = h * np.exp(deltas[..., 2])
    w = w * np.exp(deltas[..., 3])
    return np.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], -1).astype(np.float32)
