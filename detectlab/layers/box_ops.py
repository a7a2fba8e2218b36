"""Box geometry in TensorFlow (in-graph); numpy geometry for the loader is ``detectlab.boxes``.
Delta codings (numpy and in-graph from one definition) are ``detectlab.box_coding``."""

from __future__ import annotations

import math

import tensorflow as tf


def centre_iou(a, b):
    """IoU of broadcastable ``(..., 4)`` boxes given as ``cx, cy, w, h``."""
    a_min, a_max = a[..., 0:2] - a[..., 2:4] / 2, a[..., 0:2] + a[..., 2:4] / 2
    b_min, b_max = b[..., 0:2] - b[..., 2:4] / 2, b[..., 0:2] + b[..., 2:4] / 2
    wh = tf.maximum(tf.minimum(a_max, b_max) - tf.maximum(a_min, b_min), 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return tf.math.divide_no_nan(inter, union)


def iou(a, b):
    """IoU of broadcastable ``(..., 4)`` boxes given as ``y1, x1, y2, x2``."""
    y1 = tf.maximum(a[..., 0], b[..., 0])
    x1 = tf.maximum(a[..., 1], b[..., 1])
    y2 = tf.minimum(a[..., 2], b[..., 2])
    x2 = tf.minimum(a[..., 3], b[..., 3])
    inter = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return tf.math.divide_no_nan(inter, area_a + area_b - inter)


def centre_to_corners(boxes):
    """``cx, cy, w, h`` -> ``y1, x1, y2, x2``."""
    cx, cy, w, h = tf.unstack(boxes, axis=-1)
    return tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


IOU_KINDS = ("iou", "giou", "diou", "ciou")


def iou_family(a, b, kind: str = "iou", eps: float = 1e-7):
    """IoU, GIoU, DIoU or CIoU of broadcastable ``(..., 4)`` boxes ``y1, x1, y2, x2`` (``a``
    predicted, ``b`` true; any unit, the same on both axes). Values in ``[-1, 1]``;
    ``1 - value`` is the box loss. Gradients stay finite when the boxes do not overlap:
    GIoU adds ``(enclosure - union) / enclosure``, DIoU ``centre distance^2 / enclosure
    diagonal^2``, CIoU also ``alpha * v`` (the aspect-ratio term, ``alpha`` held constant as
    in Zheng et al. 2020)."""
    if kind not in IOU_KINDS:
        raise ValueError(f"unknown IoU kind {kind!r}; known: {', '.join(IOU_KINDS)}")
    ah, aw = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
    bh, bw = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    inter = (tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
             * tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0))
    union = ah * aw + bh * bw - inter + eps
    iou_value = inter / union
    if kind == "iou":
        return iou_value
    enclosing_h = tf.maximum(a[..., 2], b[..., 2]) - tf.minimum(a[..., 0], b[..., 0])
    enclosing_w = tf.maximum(a[..., 3], b[..., 3]) - tf.minimum(a[..., 1], b[..., 1])
    if kind == "giou":
        enclosure = enclosing_h * enclosing_w + eps
        return iou_value - (enclosure - union) / enclosure
    diagonal = enclosing_h**2 + enclosing_w**2 + eps
    distance = ((a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) ** 2 + (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) ** 2) / 4
    value = iou_value - distance / diagonal
    if kind == "diou":
        return value
    v = (4 / math.pi**2) * (tf.atan(bw / (bh + eps)) - tf.atan(aw / (ah + eps))) ** 2
    alpha = tf.stop_gradient(v / (v - iou_value + (1 + eps)))
    return value - alpha * v
