"""Box geometry in TensorFlow (in-graph); numpy geometry for the loader is ``detectlab.boxes``.
Delta codings (numpy and in-graph from one definition) are ``detectlab.box_coding``."""

from __future__ import annotations

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
