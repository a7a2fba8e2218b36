"""Batched per-class non-maximum suppression as a Keras layer."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="detectlab")
class PerClassNMS(keras.layers.Layer):
    """Per-class NMS over a batch (``tf.image.combined_non_max_suppression``).

    Input: ``boxes (B, N, 4)`` y1 x1 y2 x2 (any consistent unit) shared by all classes, or
    ``(B, N, C, 4)`` one box per class; ``scores (B, N, C)``.
    Output: ``boxes (B, K, 4)``, ``scores (B, K)``, ``class_ids (B, K) int32``,
    ``valid (B,) int32`` with ``K = max_detections``; rows past ``valid`` are padding.
    ``thresholds`` (optional, ``(B, 2)`` float32 ``[score, iou]``, row 0 used) replaces the
    constructor's thresholds at run time (exported models take them as inputs).
    """

    def __init__(self, max_detections: int = 100, iou_threshold: float = 0.45, score_threshold: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.max_detections = int(max_detections)
        self.iou_threshold = float(iou_threshold)
        self.score_threshold = float(score_threshold)

    def call(self, boxes, scores, thresholds=None):
        boxes = tf.cast(boxes, tf.float32)
        score_threshold, iou_threshold = self.score_threshold, self.iou_threshold
        if thresholds is not None:
            score_threshold, iou_threshold = tf.unstack(tf.cast(thresholds, tf.float32)[0])
        nms = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :] if boxes.shape.rank == 3 else boxes,
            tf.cast(scores, tf.float32),
            max_output_size_per_class=self.max_detections,
            max_total_size=self.max_detections,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            clip_boxes=False,
        )
        return nms.nmsed_boxes, nms.nmsed_scores, tf.cast(nms.nmsed_classes, tf.int32), nms.valid_detections

    def get_config(self):
        return {
            **super().get_config(),
            "max_detections": self.max_detections,
            "iou_threshold": self.iou_threshold,
            "score_threshold": self.score_threshold,
        }
