"""Faster R-CNN detections: per-class box decoding of the classifier's outputs + NMS."""

from __future__ import annotations

import keras
import tensorflow as tf

from detectlab.layers.box_ops import apply_deltas, from_xy_deltas


@keras.saving.register_keras_serializable(package="detectlab")
class RcnnBoxDecoder(keras.layers.Layer):
    """``rois (B, R, 4)``, ``probs (B, R, C+1)`` (background last), ``deltas (B, R, 4C)``
    (keras-frcnn ``tx, ty, tw, th`` times ``std``) -> ``boxes (B, R, C, 4)`` clipped to the
    image and ``scores (B, R, C)`` (the background column dropped)."""

    def __init__(self, num_classes: int, std=(8.0, 8.0, 4.0, 4.0), **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.std = [float(s) for s in std]

    def call(self, rois, probs, deltas):
        shape = tf.shape(deltas)
        deltas = tf.reshape(tf.cast(deltas, tf.float32), [shape[0], shape[1], self.num_classes, 4])
        boxes = apply_deltas(tf.cast(rois, tf.float32)[:, :, None, :], from_xy_deltas(deltas, self.std))
        return tf.clip_by_value(boxes, 0.0, 1.0), tf.cast(probs, tf.float32)[..., : self.num_classes]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "std": self.std}
