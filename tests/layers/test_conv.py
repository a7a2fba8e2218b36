import keras
import numpy as np
import pytest
import tensorflow as tf

from detectlab.layers.conv import AdaptiveConv2D
from detectlab.layers.regularizers import L2


@pytest.mark.parametrize(
    "shape, kernel, strides, padding, mode",
    [
        ((2, 6, 6, 8), 1, 1, "same", "pointwise"),
        ((2, 7, 7, 8), 1, 2, "valid", None),  # ResNet's strided 1x1 (odd map) stays a convolution
        ((2, 6, 6, 8), 1, 2, "same", None),
        ((2, 4, 4, 256), 3, 1, "same", "patches"),  # 16 pixels, 256 channels
        ((1, 12, 12, 512), 3, 1, "same", "patches"),  # 144 pixels, 512 channels
        ((1, 27, 27, 512), 3, 2, "valid", "patches"),  # Darknet downsampling to 13x13
        ((1, 9, 9, 512), 3, 2, "same", "patches"),
        ((2, 20, 20, 64), 3, 1, "same", None),  # large map, few channels: oneDNN
        ((2, 8, 8, 16), 3, 2, "valid", None),
        ((3, 7, 7, 8), 7, 1, "valid", "window"),  # Mask R-CNN's mrcnn_class_conv1
        ((3, 3, 3, 8), 3, 1, "valid", "window"),
    ],
)
def test_adaptive_conv_equals_keras_conv(shape, kernel, strides, padding, mode):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    ref = keras.layers.Conv2D(32, kernel, strides=strides, padding=padding)
    ours = AdaptiveConv2D(32, kernel, strides=strides, padding=padding)
    ref.build(shape)
    ours.build(shape)
    ours.set_weights(ref.get_weights())
    assert ours._matmul_mode(x.shape) == mode
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = ref(x), ours(x)
        la, lb = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    for ga, gb in zip(tape.gradient(la, [x] + ref.trainable_variables), tape.gradient(lb, [x] + ours.trainable_variables)):
        np.testing.assert_allclose(gb, ga, rtol=1e-3, atol=1e-3)
    assert type(keras.layers.deserialize(keras.layers.serialize(ours))) is AdaptiveConv2D


@pytest.mark.parametrize("shape, filters, mode", [((2, 7, 7, 1024), 2048, "strided_pointwise"), ((2, 8, 8, 1024), 512, None),
                                                  ((2, 8, 8, 512), 2048, None)])
def test_strided_pointwise_in_bfloat16(shape, filters, mode):
    """ResNet's stage-5 shortcut (1x1, stride 2, 1024 -> 2048) slices + multiplies in
    bfloat16; narrower layers stay convolutions. Both match Keras' bfloat16 convolution."""
    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype("float32"))
    ref = keras.layers.Conv2D(filters, 1, strides=2, dtype="mixed_bfloat16")
    ours = AdaptiveConv2D(filters, 1, strides=2, dtype="mixed_bfloat16")
    ref.build(shape)
    ours.build(shape)
    ours.set_weights(ref.get_weights())
    assert ours._matmul_mode(x.shape) == mode
    assert AdaptiveConv2D(filters, 1, strides=2)._matmul_mode(x.shape) is None  # float32: always the convolution
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = tf.cast(ref(x), tf.float32), tf.cast(ours(x), tf.float32)
        la, lb = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
    assert b.shape == a.shape == (shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2, filters)
    np.testing.assert_allclose(b, a, rtol=0.05, atol=0.3)
    for ga, gb in zip(tape.gradient(la, [x, ref.kernel]), tape.gradient(lb, [x, ours.kernel])):
        np.testing.assert_allclose(tf.cast(gb, tf.float32), tf.cast(ga, tf.float32), rtol=0.05, atol=0.05 * float(tf.reduce_max(tf.abs(ga))))


def test_l2_regulariser_equals_keras():
    w = tf.constant(np.random.default_rng(1).normal(size=(3, 3, 4, 5)).astype("float32"))
    np.testing.assert_allclose(L2(5e-4)(w), keras.regularizers.L2(5e-4)(w), rtol=1e-6)
