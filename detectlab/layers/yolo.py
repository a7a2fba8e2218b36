"""In-graph YOLOv3 decoding: raw head outputs -> boxes and per-class scores."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from detectlab.box_coding import YoloGridCoder
from detectlab.layers.box_ops import centre_to_corners


@keras.saving.register_keras_serializable(package="detectlab")
class YoloDecode(keras.layers.Layer):
    """Decode every scale's raw output.

    Input: list of ``(B, g, g, A*(5+C))`` (output ``l`` has stride ``32 / 2**l``).
    Output: ``boxes (B, N, 4)`` y1 x1 y2 x2 normalised to the network input, and
    ``scores (B, N, C)`` = objectness x class probability (sigmoid, multi-label).
    """

    def __init__(self, anchors, anchor_masks, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.anchors = [list(map(float, a)) for a in np.asarray(anchors).reshape(-1, 2)]
        self.anchor_masks = [list(map(int, m)) for m in anchor_masks]
        self.num_classes = int(num_classes)
        self.coder = YoloGridCoder()

    def call(self, outputs):
        anchors = np.asarray(self.anchors, np.float32)
        boxes, scores = [], []
        for level, raw in enumerate(outputs):
            raw = tf.cast(raw, tf.float32)
            shape = tf.shape(raw)
            num_anchors = len(self.anchor_masks[level])
            raw = tf.reshape(raw, [shape[0], shape[1], shape[2], num_anchors, 5 + self.num_classes])
            centre_boxes = self.coder.decode(raw[..., 0:2], raw[..., 2:4], anchors[self.anchor_masks[level]], level)
            level_boxes = centre_to_corners(centre_boxes)
            level_scores = tf.sigmoid(raw[..., 4:5]) * tf.sigmoid(raw[..., 5:])
            boxes.append(tf.reshape(level_boxes, [shape[0], -1, 4]))
            scores.append(tf.reshape(level_scores, [shape[0], -1, self.num_classes]))
        return tf.concat(boxes, 1), tf.concat(scores, 1)

    def get_config(self):
        return {
            **super().get_config(),
            "anchors": self.anchors,
            "anchor_masks": self.anchor_masks,
            "num_classes": self.num_classes,
        }
