"""Faster R-CNN detections: per-class box decoding of the classifier's outputs + NMS."""

from __future__ import annotations

import keras
import tensorflow as tf

from detectlab.box_coding import DeltaCoder


@keras.saving.register_keras_serializable(package="detectlab")
class RcnnBoxDecoder(keras.layers.Layer):
    """``rois (B, R, 4)``, ``probs (B, R, C+1)`` (background last), ``deltas (B, R, 4C)``
    (coded by ``coder``, the classifier's :class:`DeltaCoder`) -> ``boxes (B, R, C, 4)`` clipped
    to the image and ``scores (B, R, C)`` (the background column dropped)."""

    def __init__(self, num_classes: int, coder, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.coder = DeltaCoder.from_config(coder)

    def call(self, rois, probs, deltas):
        shape = tf.shape(deltas)
        deltas = tf.reshape(tf.cast(deltas, tf.float32), [shape[0], shape[1], self.num_classes, 4])
        boxes = self.coder.decode(tf.cast(rois, tf.float32)[:, :, None, :], deltas, clip=True)
        return boxes, tf.cast(probs, tf.float32)[..., : self.num_classes]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "coder": self.coder.get_config()}
