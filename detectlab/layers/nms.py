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


def class_offset_nms(boxes, scores, max_detections: int, iou_threshold: float, score_threshold: float):
    """Per-class NMS of one image with TFLite's built-in NMS op (no ``combined_non_max_suppression``).

    ``boxes (N, 4)`` normalised y1 x1 y2 x2 shared by all classes, ``scores (N, C)``. Each
    (box, class) pair is shifted by ``2 * class`` so boxes of different classes never overlap;
    one greedy NMS then equals per-class NMS followed by the global top ``max_detections``
    (what :class:`PerClassNMS` returns). Output: ``boxes (K, 4)``, ``scores (K,)``,
    ``class_ids (K,) int32``, ``valid ()`` int32; rows past ``valid`` are padding.
    """
    num_classes = tf.shape(scores)[1]
    flat_boxes = tf.reshape(tf.tile(boxes[:, None], [1, num_classes, 1]), [-1, 4])
    flat_classes = tf.tile(tf.range(num_classes), [tf.shape(boxes)[0]])
    shifted = flat_boxes + 2.0 * tf.cast(flat_classes, tf.float32)[:, None]
    index, kept_scores, valid = tf.raw_ops.NonMaxSuppressionV5(
        boxes=shifted, scores=tf.reshape(scores, [-1]), max_output_size=max_detections, iou_threshold=iou_threshold,
        score_threshold=score_threshold, soft_nms_sigma=0.0, pad_to_max_output_size=True)
    return tf.gather(flat_boxes, index), kept_scores, tf.gather(flat_classes, index), valid
