"""Mask R-CNN final detections (matterport ``DetectionLayer``), batched and in-graph.

Class index ``0`` is background, ``1..C`` objects; deltas per class are coded by the head's
:class:`DeltaCoder` (the one the detection-target layer encodes with); boxes ``y1, x1, y2, x2`` normalised to the input image.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from detectlab.box_coding import DeltaCoder
from detectlab.layers.nms import PerClassNMS


@keras.saving.register_keras_serializable(package="detectlab")
class MaskRcnnDetections(keras.layers.Layer):
    """``rois (B, N, 4)``, ``probs (B, N, C+1)``, ``deltas (B, N, C+1, 4)`` ->
    ``boxes (B, K, 4)``, ``class_ids (B, K) int32`` (1..C), ``scores (B, K)``, ``valid (B,) int32``.

    Each ROI keeps only its arg-max class and that class's refined box (clipped to
    ``[0, 1]``); background ROIs, all-zero (padding) ROIs and scores below ``min_confidence``
    are dropped; then per-class NMS (``nms_threshold``) and the ``max_detections`` (``K``) best
    by score, sorted. Rows past ``valid`` are zeros (class 0). Computes in float32.
    ``thresholds`` (optional ``(B, 2)`` ``[min_confidence, nms_threshold]``, row 0 used)
    replaces the constructor's values at run time.
    """

    def __init__(self, max_detections: int = 100, min_confidence: float = 0.7, nms_threshold: float = 0.3,
                 coder=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.supports_jit = False  # combined NMS has no XLA kernel
        self.max_detections = int(max_detections)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.coder = DeltaCoder.from_config(coder)
        # score_threshold 0: scores are pre-masked with ``>= min_confidence`` (NMS keeps ``> 0``)
        self.nms = PerClassNMS(self.max_detections, self.nms_threshold, 0.0, dtype="float32", name="per_class_nms")

    def build(self, rois_shape=None, probs_shape=None, deltas_shape=None):
        self.nms.build(None)  # stateless sub-layer
        self.built = True

    def call(self, rois, probs, deltas, thresholds=None):
        min_confidence, nms_thresholds = self.min_confidence, None
        if thresholds is not None:
            min_confidence, iou = tf.unstack(tf.cast(thresholds, tf.float32)[0])
            nms_thresholds = tf.stack([0.0, iou])[None]
        rois = tf.cast(rois, tf.float32)
        probs = tf.cast(probs, tf.float32)
        deltas = tf.cast(deltas, tf.float32)
        num_classes = tf.shape(probs)[-1]
        class_ids = tf.argmax(probs, axis=-1, output_type=tf.int32)  # (B, N)
        scores = tf.reduce_max(probs, axis=-1)
        class_deltas = tf.gather(deltas, class_ids, batch_dims=2)  # (B, N, 4)
        boxes = self.coder.decode(rois, class_deltas, clip=True)
        keep = (class_ids > 0) & (scores >= min_confidence) & tf.reduce_any(tf.not_equal(rois, 0.0), axis=-1)
        # one column per class, the ROI's score in its class column only (background column stays 0)
        score_matrix = tf.one_hot(class_ids, num_classes) * tf.where(keep, scores, 0.0)[..., None]
        boxes, scores, class_ids, valid = self.nms(boxes, score_matrix, nms_thresholds)
        return boxes, class_ids, scores, valid

    def compute_output_spec(self, rois, probs, deltas, thresholds=None):
        b, k = rois.shape[0], self.max_detections
        return (keras.KerasTensor((b, k, 4), dtype="float32"), keras.KerasTensor((b, k), dtype="int32"),
                keras.KerasTensor((b, k), dtype="float32"), keras.KerasTensor((b,), dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "max_detections": self.max_detections, "min_confidence": self.min_confidence,
                "nms_threshold": self.nms_threshold, "coder": self.coder.get_config()}
