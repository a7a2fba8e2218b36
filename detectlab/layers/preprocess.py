"""Input normalisation as a serialisable layer (no Lambda), so saved models take raw images."""

from __future__ import annotations

import keras
import tensorflow as tf

# per-channel means in RGB order
IMAGENET_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)  # the Caffe/keras-frcnn VGG and ResNet weights
MASK_RCNN_MEAN_RGB = (123.7, 116.8, 103.9)  # matterport Mask R-CNN (config.MEAN_PIXEL)


@keras.saving.register_keras_serializable(package="detectlab")
class ImageNormalization(keras.layers.Layer):
    """``(image - mean) / scale`` on RGB ``[0, 255]`` input, optionally reordered to BGR.

    ``bgr=True`` reproduces the Caffe-style preprocessing the reference VGG16/ResNet-50
    ImageNet weights were trained with (BGR order, mean subtracted, no scaling).
    """

    def __init__(self, mean=(0.0, 0.0, 0.0), scale: float = 1.0, bgr: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(m) for m in mean]
        self.scale = float(scale)
        self.bgr = bool(bgr)

    def call(self, images):
        x = (tf.cast(images, tf.float32) - tf.constant(self.mean, tf.float32)) / self.scale
        x = x[..., ::-1] if self.bgr else x
        return tf.cast(x, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "scale": self.scale, "bgr": self.bgr}
