"""Batch normalisation on TensorFlow's fused kernel.

:class:`FusedBatchNormalization` is ``keras.layers.BatchNormalization`` (same weights,
config, momentum/epsilon and frozen-layer behaviour) whose 4-D, channels-last case runs
``FusedBatchNormV3``: one pass for statistics and normalisation, statistics accumulated
in float32, inputs kept in bfloat16/float16 under mixed precision. On CPUs with oneDNN
this is about 3x faster for forward+backward than Keras' composite implementation, which
upcasts every activation to float32. Other cases fall back to Keras.

``use_batch_statistics=False`` freezes the statistics: the layer always normalises with its
moving mean/variance (inference mode) while ``gamma``/``beta`` stay trainable: the "frozen
BN" of the reference R-CNN models, needed with small batches.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="detectlab")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    def __init__(self, *args, use_batch_statistics: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_batch_statistics = bool(use_batch_statistics)

    def call(self, inputs, training=None, mask=None):
        training = training and self.use_batch_statistics
        if mask is not None or self.renorm or len(inputs.shape) != 4 or self.axis not in (-1, 3):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, self.compute_dtype)
        channels = x.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels], tf.float32)
        beta = self.beta if self.center else tf.zeros([channels], tf.float32)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
            )
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, data_format="NHWC", is_training=False,
            )
        return y

    def get_config(self):
        return {**super().get_config(), "use_batch_statistics": self.use_batch_statistics}
