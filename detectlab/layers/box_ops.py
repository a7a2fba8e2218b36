"""Box maths in TensorFlow (in-graph). Numpy versions for the loader: ``detectlab.boxes``."""

from __future__ import annotations

import tensorflow as tf

from detectlab.boxes import XY_ORDER


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


def encode_deltas(boxes, gt, std=(1.0, 1.0, 1.0, 1.0)):
    """``(dy, dx, dh, dw) / std`` taking ``boxes (..., 4)`` onto ``gt (..., 4)``, both
    ``y1, x1, y2, x2`` (in-graph twin of :func:`detectlab.boxes.encode_deltas`)."""
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    gh = gt[..., 2] - gt[..., 0]
    gw = gt[..., 3] - gt[..., 1]
    dy = (gt[..., 0] + 0.5 * gh - boxes[..., 0] - 0.5 * h) / h
    dx = (gt[..., 1] + 0.5 * gw - boxes[..., 1] - 0.5 * w) / w
    deltas = tf.stack([dy, dx, tf.math.log(gh / h), tf.math.log(gw / w)], axis=-1)
    return deltas / tf.constant(std, tf.float32)


def from_xy_deltas(deltas, std):
    """keras-frcnn's coded ``(tx, ty, tw, th) * std`` (``deltas (..., 4)``; ``std`` one number
    or four in that order) -> plain ``(dy, dx, dh, dw)`` for :func:`apply_deltas`: the
    in-graph inverse of :func:`detectlab.data.rcnn_targets.xy_deltas`' coding."""
    return tf.gather(deltas / tf.constant(std, tf.float32), XY_ORDER, axis=-1)


def apply_deltas(anchors, deltas, std=(1.0, 1.0, 1.0, 1.0)):
    """Boxes from ``anchors (..., 4)`` y1 x1 y2 x2 and coded ``deltas (..., 4)`` =
    ``(dy, dx, dh, dw) / std``: the inverse of :func:`encode_deltas` with the same ``std``
    (in-graph twin of :func:`detectlab.boxes.decode_deltas`); size changes are capped at
    ``exp(4)``."""
    deltas = deltas * tf.constant(std, tf.float32)
    h = anchors[..., 2] - anchors[..., 0]
    w = anchors[..., 3] - anchors[..., 1]
    cy = anchors[..., 0] + 0.5 * h + deltas[..., 0] * h
    cx = anchors[..., 1] + 0.5 * w + deltas[..., 1] * w
    h = h * tf.exp(tf.minimum(deltas[..., 2], 4.0))
    w = w * tf.exp(tf.minimum(deltas[..., 3], 4.0))
    return tf.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)
