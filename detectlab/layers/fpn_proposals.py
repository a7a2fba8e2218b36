"""Mask R-CNN region proposals over the FPN anchors (matterport ``ProposalLayer``).

Anchors come from :func:`detectlab.anchor_pyramid.pyramid_anchors` (level-major, then cell
row-major, then ratio) and are built from the layer's config, so the saved config stays
small. Boxes are ``y1, x1, y2, x2`` normalised to the (square) input image.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from detectlab.anchor_pyramid import FPN_RATIOS, FPN_SCALES, FPN_STRIDES, pyramid_anchors
from detectlab.box_coding import DeltaCoder
from detectlab.layers.proposals import top_proposals


@keras.saving.register_keras_serializable(package="detectlab")
class FpnProposals(keras.layers.Layer):
    """``scores (B, N)`` foreground probabilities, ``deltas (B, N, 4)`` per anchor, coded by
    ``coder`` (the RPN's :class:`DeltaCoder`, which the loader encodes its targets with) ->
    ``(proposals (B, K, 4), counts (B,) int32)``.

    The ``pre_nms`` best anchors are decoded, clipped to ``[0, 1]`` and go through NMS
    (``nms_threshold``); ``K = proposals_training`` when called with ``training=True``, else
    ``proposals_inference``. Rows past ``counts`` are zeros. Inputs are used in float32 whatever
    the dtype policy (no autocast), outputs are float32 / int32.
    """

    def __init__(self, image_size: int, strides=FPN_STRIDES, scales=FPN_SCALES, ratios=FPN_RATIOS,
                 anchor_stride: int = 1, anchor_offset: float = 0.0, coder=None, pre_nms: int = 6000,
                 nms_threshold: float = 0.7, proposals_training: int = 2000, proposals_inference: int = 1000,
                 **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.strides = [int(s) for s in strides]
        self.scales = [float(s) for s in scales]
        self.ratios = [float(r) for r in ratios]
        self.anchor_stride, self.anchor_offset = int(anchor_stride), float(anchor_offset)
        self.coder = DeltaCoder.from_config(coder)
        self.pre_nms, self.nms_threshold = int(pre_nms), float(nms_threshold)
        self.proposals_training, self.proposals_inference = int(proposals_training), int(proposals_inference)
        _, self.anchors = pyramid_anchors(self.image_size, self.strides, self.scales, self.ratios,
                                          self.anchor_stride, self.anchor_offset)

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.shape[0])

    def call(self, scores, deltas, training=None):
        batch = tf.shape(scores)[0]
        scores = tf.reshape(tf.cast(scores, tf.float32), [batch, -1])
        deltas = tf.reshape(tf.cast(deltas, tf.float32), [batch, -1, 4])
        k = self.proposals_training if training else self.proposals_inference
        return top_proposals(self.anchors, deltas, scores, self.coder, self.pre_nms, self.nms_threshold, k)

    def compute_output_spec(self, scores, deltas, training=None):
        batch = scores.shape[0]
        return (keras.KerasTensor((batch, None, 4), dtype="float32"), keras.KerasTensor((batch,), dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "strides": self.strides,
                "scales": self.scales, "ratios": self.ratios, "anchor_stride": self.anchor_stride,
                "anchor_offset": self.anchor_offset, "coder": self.coder.get_config(), "pre_nms": self.pre_nms,
                "nms_threshold": self.nms_threshold, "proposals_training": self.proposals_training,
                "proposals_inference": self.proposals_inference}
