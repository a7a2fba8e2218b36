"""Region proposals from RPN outputs, in-graph and batched (no Python loop per box).

``decode_rpn`` turns per-anchor objectness and deltas into boxes; ``top_proposals`` keeps
the ``pre_nms`` best, applies NMS and returns a fixed number of boxes per image (zero
padding) with the count of real ones. Boxes are ``y1, x1, y2, x2`` normalised to the input.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from detectlab.anchors import grid_anchors


def apply_deltas(anchors, deltas):
    """Boxes from ``anchors (..., 4)`` y1 x1 y2 x2 and ``deltas (..., 4)`` = ``(ty, tx, th, tw)``
    (already divided by their std), centre/size coding."""
    h = anchors[..., 2] - anchors[..., 0]
    w = anchors[..., 3] - anchors[..., 1]
    cy = anchors[..., 0] + 0.5 * h + deltas[..., 0] * h
    cx = anchors[..., 1] + 0.5 * w + deltas[..., 1] * w
    h = h * tf.exp(tf.minimum(deltas[..., 2], 4.0))
    w = w * tf.exp(tf.minimum(deltas[..., 3], 4.0))
    return tf.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def top_proposals(boxes, scores, pre_nms: int, nms_threshold: float, max_proposals: int, min_size: float = 0.0):
    """``boxes (B, N, 4)`` normalised, ``scores (B, N)`` -> ``(proposals (B, K, 4), counts (B,))``.

    Boxes are clipped to ``[0, 1]``; boxes thinner than ``min_size`` (normalised) are dropped
    (score -inf); then the ``pre_nms`` best per image go through NMS, ``K = max_proposals``.
    """
    boxes = tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0)
    scores = tf.cast(scores, tf.float32)
    if min_size > 0:
        small = tf.logical_or(boxes[..., 2] - boxes[..., 0] < min_size, boxes[..., 3] - boxes[..., 1] < min_size)
        scores = tf.where(small, tf.fill(tf.shape(scores), -1e9), scores)
    k = tf.minimum(pre_nms, tf.shape(scores)[1])
    top_scores, index = tf.math.top_k(scores, k=k, sorted=True)
    top_boxes = tf.gather(boxes, index, batch_dims=1)
    selected, counts = tf.image.non_max_suppression_padded(
        top_boxes,
        top_scores,
        max_output_size=max_proposals,
        iou_threshold=nms_threshold,
        score_threshold=-1e8,
        pad_to_max_output_size=True,
        sorted_input=True,
        canonicalized_coordinates=True,
    )
    proposals = tf.gather(top_boxes, selected, batch_dims=1)
    valid = tf.sequence_mask(counts, max_proposals)
    return tf.where(valid[..., None], proposals, 0.0), counts


@keras.saving.register_keras_serializable(package="detectlab")
class RpnProposals(keras.layers.Layer):
    """Faster R-CNN proposals: ``scores (B, H, W, A)``, ``deltas (B, H, W, 4A)`` (keras-frcnn
    ``tx, ty, tw, th`` scaled by ``std``) -> ``(proposals (B, K, 4), counts (B,))``."""

    def __init__(self, image_size: int, stride: int, scales, ratios, std: float = 4.0, pre_nms: int = 6000,
                 nms_threshold: float = 0.7, max_proposals: int = 300, **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.stride = int(image_size), int(stride)
        self.scales = [float(s) for s in scales]
        self.ratios = [[float(v) for v in r] for r in ratios]
        self.std, self.pre_nms = float(std), int(pre_nms)
        self.nms_threshold, self.max_proposals = float(nms_threshold), int(max_proposals)
        side = self.image_size // self.stride
        self.anchors = grid_anchors((side, side), self.stride, self.scales, self.ratios) / self.image_size

    def call(self, scores, deltas):
        batch = tf.shape(scores)[0]
        scores = tf.reshape(tf.cast(scores, tf.float32), [batch, -1])
        deltas = tf.reshape(tf.cast(deltas, tf.float32), [batch, -1, 4]) / self.std
        boxes = apply_deltas(tf.constant(self.anchors)[None], tf.gather(deltas, [1, 0, 3, 2], axis=-1))
        return top_proposals(boxes, scores, self.pre_nms, self.nms_threshold, self.max_proposals)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "stride": self.stride, "scales": self.scales,
                "ratios": self.ratios, "std": self.std, "pre_nms": self.pre_nms, "nms_threshold": self.nms_threshold,
                "max_proposals": self.max_proposals}
