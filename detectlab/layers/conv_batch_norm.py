"""``ConvBatchNorm``: a convolution and the batch normalisation after it, run as one
convolution whenever the normalisation uses its moving statistics.

With ``s = gamma / sqrt(moving_variance + epsilon)``, batch norm after a linear convolution is

    bn(conv(x, W) + b) = conv(x, W * s) + ((b - moving_mean) * s + beta)

so a frozen batch norm (the R-CNN default) and any batch norm at inference costs nothing:
no normalisation pass over the feature map forward, none backward, and the gradients of
``W``, ``b``, ``gamma`` and ``beta`` flow through the fold (they are the same gradients).
While the batch norm trains on batch statistics the pair runs as the two layers.

The convolution and the batch norm stay two layers with their own names (``res2a_branch2a``,
``bn2a_branch2a``) and weights, reached through :attr:`ConvBatchNorm.named_parts`, so
by-name weight loading, layer presets and ``get_layer`` work as if the model were flat.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from detectlab.layers.batch_norm import FusedBatchNormalization
from detectlab.layers.conv import AdaptiveConv2D


@keras.saving.register_keras_serializable(package="detectlab")
class ConvBatchNorm(keras.layers.Layer):
    """``conv`` (a linear ``Conv2D``) followed by ``bn`` (a ``BatchNormalization`` on the
    last axis), named ``{conv.name}_{bn.name}`` unless ``name`` is given."""

    def __init__(self, conv, bn, **kwargs):
        conv = conv if isinstance(conv, keras.layers.Layer) else keras.saving.deserialize_keras_object(conv)
        bn = bn if isinstance(bn, keras.layers.Layer) else keras.saving.deserialize_keras_object(bn)
        kwargs.setdefault("name", f"{conv.name}_{bn.name}")
        kwargs.setdefault("dtype", conv.dtype_policy)
        # the fold is computed from the float32 weights, then cast once: no autocast here
        super().__init__(autocast=False, **kwargs)
        if conv.activation not in (None, keras.activations.linear) or conv.data_format != "channels_last":
            raise ValueError(f"{self.name}: ConvBatchNorm needs a linear, channels-last convolution")
        if bn.axis not in (-1, 3) or bn.renorm:
            raise ValueError(f"{self.name}: ConvBatchNorm needs batch normalisation on the channel axis")
        self.conv, self.bn = conv, bn

    @property
    def named_parts(self) -> tuple:
        return self.conv, self.bn

    def build(self, input_shape):
        if not self.conv.built:
            self.conv.build(input_shape)
        if not self.bn.built:
            self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        bn = self.bn
        if training and bn.trainable and getattr(bn, "use_batch_statistics", True):
            return bn(self.conv(inputs), training=training)
        conv, dtype = self.conv, self.compute_dtype
        scale = tf.math.rsqrt(tf.cast(bn.moving_variance, tf.float32) + bn.epsilon)
        if bn.scale:
            scale = scale * tf.cast(bn.gamma, tf.float32)
        shift = -tf.cast(bn.moving_mean, tf.float32)
        if conv.use_bias:
            shift = shift + tf.cast(conv.bias, tf.float32)
        shift = shift * scale
        if bn.center:
            shift = shift + tf.cast(bn.beta, tf.float32)
        kernel = tf.cast(tf.cast(conv.kernel, tf.float32) * scale, dtype)
        outputs = conv.convolution_op(tf.cast(inputs, dtype), kernel)
        # a broadcast add, not tf.nn.bias_add: BiasAdd's gradient sums in the tensor's dtype,
        # which in bfloat16 stops growing once the sum is 256x a term (the bias, beta and
        # gamma gradients lost ~99% over a 128x128 map); the add's gradient (a reduce_sum)
        # accumulates in float32. oneDNN still fuses the add into the convolution forward.
        return outputs + tf.cast(shift, dtype)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.pop("autocast", None)
        return {
            **config,
            "conv": keras.saving.serialize_keras_object(self.conv),
            "bn": keras.saving.serialize_keras_object(self.bn),
        }



def conv_bn(x, filters: int, kernel: int, conv_name: str, bn_name: str, train_bn: bool, **conv_kwargs):
    """``AdaptiveConv2D`` ``conv_name`` then ``FusedBatchNormalization`` ``bn_name`` (epsilon
    1e-3; batch statistics only with ``train_bn``), as one :class:`ConvBatchNorm`."""
    conv = AdaptiveConv2D(filters, kernel, name=conv_name, **conv_kwargs)
    bn = FusedBatchNormalization(epsilon=1e-3, name=bn_name, use_batch_statistics=train_bn)
    return ConvBatchNorm(conv, bn)(x)
