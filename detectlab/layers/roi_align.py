"""ROI feature extraction: bilinear crop-and-resize of each box to a fixed grid.

``RoiAlign`` works on one feature map (Faster R-CNN, stride 16). Boxes are
``(B, R, 4)`` ``y1, x1, y2, x2`` normalised to the network input (so to the feature map).
Output ``(B, R, P, P, C)``. keras-frcnn's "ROI pooling" cropped each box from the feature
map and resized it bilinearly to 7x7 / 14x14; this is the same operation without the
rounding of the box to whole feature cells.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def crop_and_resize(features, boxes, pool_size: int):
    """``features (B, H, W, C)``, ``boxes (B, R, 4)`` normalised -> ``(B, R, P, P, C)``."""
    shape = tf.shape(boxes)
    batch, rois = shape[0], shape[1]
    flat = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    index = tf.repeat(tf.range(batch), rois)
    crops = tf.image.crop_and_resize(tf.cast(features, tf.float32), flat, index, [pool_size, pool_size])
    crops = tf.cast(crops, features.dtype)
    return tf.reshape(crops, tf.concat([[batch, rois, pool_size, pool_size], tf.shape(features)[-1:]], 0))


@keras.saving.register_keras_serializable(package="detectlab")
class RoiAlign(keras.layers.Layer):
    """Boxes stay float32 under mixed precision (no autocast); the output has the
    features' dtype."""

    def __init__(self, pool_size: int = 7, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.supports_jit = False  # CropAndResize has no XLA kernel: Keras compiles the views holding it without XLA
        self.pool_size = int(pool_size)

    def call(self, features, boxes):
        return crop_and_resize(features, boxes, self.pool_size)

    def compute_output_shape(self, features_shape, boxes_shape):
        return (boxes_shape[0], boxes_shape[1], self.pool_size, self.pool_size, features_shape[-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}
