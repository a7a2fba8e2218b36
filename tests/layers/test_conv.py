import keras
import numpy as np
import pytest
import tensorflow as tf

from detectlab.layers.conv import AdaptiveConv2D
from detectlab.layers.regularizers import L2
from detectlab.utils import cpu_flags


@pytest.mark.parametrize(
    "shape, kernel, strides, padding, mode",
    [
        ((2, 6, 6, 8), 1, 1, "same", "pointwise"),
        ((2, 7, 7, 8), 1, 2, "valid", None),  # ResNet's strided 1x1 (odd map) stays a convolution
        ((2, 6, 6, 8), 1, 2, "same", None),
        ((2, 4, 4, 256), 3, 1, "same", "patches"),  # 16 pixels, 256 channels
        ((1, 12, 12, 512), 3, 1, "same", "patches/same_conv"),  # 144 pixels, 512 channels
        ((1, 27, 27, 512), 3, 2, "valid", "patches"),  # Darknet downsampling to 13x13
        ((1, 9, 9, 512), 3, 2, "same", "patches"),
        ((2, 20, 20, 64), 3, 1, "same", "same_conv"),  # large map, few channels: oneDNN's convolution
        ((2, 9, 9, 32), 5, 1, "same", "same_conv"),
        ((2, 9, 9, 3), 3, 1, "same", None),  # an image: its gradient is never needed
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
    # the input gradient runs as a convolution only on CPUs without AVX-512, where it also
    # beats patches + matmul on all but the smallest maps
    avx512 = "avx512f" in cpu_flags()
    mode = {"same_conv": None if avx512 else "same_conv", "patches/same_conv": "patches" if avx512 else "same_conv"}.get(mode, mode)
    assert ours.computation(x.shape) == mode
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
    assert ours.computation(x.shape) == mode
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = tf.cast(ref(x), tf.float32), tf.cast(ours(x), tf.float32)
        la, lb = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
    assert b.shape == a.shape == (shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2, filters)
    np.testing.assert_allclose(b, a, rtol=0.05, atol=0.3)
    for ga, gb in zip(tape.gradient(la, [x, ref.kernel]), tape.gradient(lb, [x, ours.kernel])):
        np.testing.assert_allclose(tf.cast(gb, tf.float32), tf.cast(ga, tf.float32), rtol=0.05, atol=0.05 * float(tf.reduce_max(tf.abs(ga))))


@pytest.mark.parametrize("shape, stride", [((3, 14, 14, 16), 2), ((2, 13, 7, 8), 2), ((2, 10, 11, 4), 3)])
def test_strided_pointwise_equals_the_convolution_with_its_gradients(shape, stride):
    """Slice + matmul, with the input gradient spread back by reshapes, is a strided 1x1
    convolution (odd maps and stride 3 included)."""
    from detectlab.layers.conv import strided_pointwise

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    k = tf.constant(rng.normal(size=(1, 1, shape[3], 5)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, k])
        ref = tf.nn.conv2d(x, k, stride, "VALID")
        ours = strided_pointwise(x, k, stride)
        weights = tf.constant(rng.normal(size=ref.shape).astype("float32"))
        lr, lo = tf.reduce_sum(ref * weights), tf.reduce_sum(ours * weights)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    for gr, go in zip(tape.gradient(lr, [x, k]), tape.gradient(lo, [x, k])):
        assert go.shape == gr.shape
        np.testing.assert_allclose(go, gr, rtol=1e-5, atol=1e-4)


def test_float32_strided_pointwise_follows_the_cpu():
    """ResNet stage 5's strided 1x1 layers slice + multiply in float32 on CPUs without
    AVX-512 (where oneDNN's gradients for them are slow); stages 3-4 stay convolutions."""
    stage5 = AdaptiveConv2D(2048, 1, strides=2).computation((64, 14, 14, 1024))
    assert stage5 == (None if "avx512f" in cpu_flags() else "strided_pointwise")
    assert AdaptiveConv2D(512, 1, strides=2).computation((2, 76, 76, 512)) is None


def test_l2_regulariser_equals_keras():
    w = tf.constant(np.random.default_rng(1).normal(size=(3, 3, 4, 5)).astype("float32"))
    np.testing.assert_allclose(L2(5e-4)(w), keras.regularizers.L2(5e-4)(w), rtol=1e-6)


@pytest.mark.parametrize("shape, stride", [((3, 14, 14, 16), 2), ((2, 5, 7, 8), 3)])
def test_transposed_convolution_as_matmul_equals_it_with_its_gradients(shape, stride):
    """kernel = stride: one matmul to (a, b, Cout) columns + depth_to_space is the transposed
    convolution, forward and backward."""
    from detectlab.layers.conv import transposed_as_matmul

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    k = tf.constant(rng.normal(size=(stride, stride, 6, shape[3])).astype("float32"))  # (s, s, Cout, Cin)
    out_shape = [shape[0], shape[1] * stride, shape[2] * stride, 6]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, k])
        ref = tf.nn.conv2d_transpose(x, k, out_shape, stride, "VALID")
        ours = transposed_as_matmul(x, k, stride)
        weights = tf.constant(rng.normal(size=out_shape).astype("float32"))
        lr, lo = tf.reduce_sum(ref * weights), tf.reduce_sum(ours * weights)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    for gr, go in zip(tape.gradient(lr, [x, k]), tape.gradient(lo, [x, k])):
        np.testing.assert_allclose(go, gr, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_adaptive_transposed_convolution_in_bfloat16(padding):
    """Mask R-CNN's 2x2 stride-2 deconvolution runs as a matmul in bfloat16 and matches Keras'
    float32 layer (outputs and every gradient, the bias's summed over all 3,136 output
    positions); float32 and overlapping kernels keep Keras' kernel."""
    from detectlab.layers.conv import AdaptiveConv2DTranspose

    shape = (4, 14, 14, 16)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    weights = tf.constant(rng.normal(size=(4, 28, 28, 8)).astype("float32") + 1.0)
    ref = keras.layers.Conv2DTranspose(8, 2, strides=2, padding=padding, bias_initializer="ones")
    ours = AdaptiveConv2DTranspose(8, 2, strides=2, padding=padding, dtype="mixed_bfloat16")
    ref.build(shape)
    ours.build(shape)
    ours.set_weights(ref.get_weights())
    assert ours.computation(shape) == "matmul"
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = ref(x), tf.cast(ours(x), tf.float32)
        la, lb = tf.reduce_sum(a * weights), tf.reduce_sum(b * weights)
    assert b.shape == a.shape == (4, 28, 28, 8)
    np.testing.assert_allclose(b, a, rtol=0.02, atol=0.02 * float(tf.reduce_max(tf.abs(a))))
    for ga, gb in zip(tape.gradient(la, [x] + ref.trainable_variables), tape.gradient(lb, [x] + ours.trainable_variables)):
        np.testing.assert_allclose(tf.cast(gb, tf.float32), ga, rtol=0.03, atol=0.03 * float(tf.reduce_max(tf.abs(ga))))
    relu = AdaptiveConv2DTranspose(8, 2, strides=2, padding=padding, activation="relu", dtype="mixed_bfloat16")
    relu.build(shape)
    relu.set_weights(ref.get_weights())
    np.testing.assert_allclose(tf.cast(relu(x), tf.float32), tf.nn.relu(a), rtol=0.02, atol=0.02 * float(tf.reduce_max(a)))
    assert AdaptiveConv2DTranspose(8, 2, strides=2).computation(shape) is None  # float32
    assert AdaptiveConv2DTranspose(8, 3, strides=2, dtype="mixed_bfloat16").computation(shape) is None
    assert type(keras.layers.deserialize(keras.layers.serialize(ours))) is AdaptiveConv2DTranspose
