import keras
import numpy as np
import pytest
import tensorflow as tf

from detectlab.layers.batch_norm import FusedBatchNormalization
from detectlab.layers.conv import AdaptiveConv2D
from detectlab.layers.conv_batch_norm import ConvBatchNorm
from detectlab.utils import named_layers


def _pair(shape, kernel, strides, padding, train_bn, dtype=None, seed=0):
    """A ConvBatchNorm and the same two layers unfused, with equal non-trivial weights."""
    rng = np.random.default_rng(seed)
    cin, cout = shape[-1], 6
    layers = []
    for _ in range(2):
        conv = AdaptiveConv2D(cout, kernel, strides=strides, padding=padding, name="res2a_branch2a", dtype=dtype)
        bn = FusedBatchNormalization(epsilon=1e-3, name="bn2a_branch2a", use_batch_statistics=train_bn, dtype=dtype)
        layers.append((conv, bn))
    weights = [rng.normal(size=(kernel, kernel, cin, cout)) * 0.3, rng.normal(size=cout),  # kernel, bias
               rng.uniform(0.5, 1.5, cout), rng.normal(size=cout),  # gamma, beta
               rng.normal(size=cout), rng.uniform(0.5, 2.0, cout)]  # moving mean, variance
    weights = [w.astype("float32") for w in weights]
    (conv, bn), (ref_conv, ref_bn) = layers
    fused = ConvBatchNorm(conv, bn)
    fused.build(shape)
    ref_conv.build(shape)
    ref_bn.build(ref_conv.compute_output_shape(shape))
    for layer in (conv, ref_conv):
        layer.set_weights(weights[:2])
    for layer in (bn, ref_bn):
        layer.set_weights(weights[2:])
    return fused, ref_conv, ref_bn


@pytest.mark.parametrize("shape, kernel, strides, padding", [
    ((2, 9, 9, 4), 3, 1, "same"),  # oneDNN convolution
    ((2, 8, 8, 4), 1, 1, "valid"),  # pointwise matmul
    ((2, 9, 9, 4), 1, 2, "valid"),  # strided 1x1 (ResNet's first layer of a stage)
    ((3, 7, 7, 4), 7, 1, "valid"),  # Mask R-CNN's box head window
])
def test_frozen_batch_norm_folds_into_the_convolution(shape, kernel, strides, padding):
    """Same outputs and the same gradients for x, kernel, bias, gamma and beta as the two
    layers in sequence; the moving statistics do not move."""
    fused, ref_conv, ref_bn = _pair(shape, kernel, strides, padding, train_bn=False)
    x = tf.constant(np.random.default_rng(1).normal(size=shape).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a = ref_bn(ref_conv(x), training=True)
        b = fused(x, training=True)
        la, lb = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    ref_vars = [x] + ref_conv.trainable_variables + ref_bn.trainable_variables
    ours = [x] + fused.trainable_variables
    assert [v.path.split("/")[-1] for v in ours[1:]] == ["kernel", "bias", "gamma", "beta"]
    for ga, gb in zip(tape.gradient(la, ref_vars), tape.gradient(lb, ours)):
        np.testing.assert_allclose(gb, ga, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(fused.bn.moving_mean, ref_bn.moving_mean)


def test_trained_batch_norm_uses_batch_statistics_and_updates_them():
    fused, ref_conv, ref_bn = _pair((4, 6, 6, 3), 3, 1, "same", train_bn=True)
    x = np.random.default_rng(2).normal(size=(4, 6, 6, 3)).astype("float32") + 2
    before = fused.bn.moving_mean.numpy().copy()
    np.testing.assert_allclose(fused(x, training=True), ref_bn(ref_conv(x), training=True), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.bn.moving_mean, ref_bn.moving_mean, rtol=1e-5)
    assert not np.allclose(fused.bn.moving_mean, before)
    # inference folds with the (updated) moving statistics
    np.testing.assert_allclose(fused(x, training=False), ref_bn(ref_conv(x), training=False), rtol=1e-4, atol=1e-4)
    # a batch norm frozen by a layer preset (trainable=False) runs folded, in inference mode
    fused.bn.trainable = ref_bn.trainable = False
    np.testing.assert_allclose(fused(x, training=True), ref_bn(ref_conv(x), training=True), rtol=1e-4, atol=1e-4)


def test_bfloat16_fold_and_keras_round_trip(tmp_path):
    """Under mixed bfloat16 the fold is computed in float32 and rounded once; the pair
    saves and reloads (safe mode) with its named parts and weights."""
    shape = (2, 8, 8, 16)
    fused, ref_conv, ref_bn = _pair(shape, 3, 1, "same", train_bn=False, dtype="mixed_bfloat16")
    x = np.random.default_rng(3).normal(size=shape).astype("float32")
    a = tf.cast(ref_bn(ref_conv(x)), tf.float32).numpy()
    b = tf.cast(fused(x), tf.float32).numpy()
    assert fused(x).dtype == tf.bfloat16
    np.testing.assert_allclose(b, a, rtol=0.05, atol=0.05 * np.abs(a).max())

    inputs = keras.Input(shape[1:])
    model = keras.Model(inputs, ConvBatchNorm.from_config(fused.get_config())(inputs))
    for part, source in zip(named_layers(model)[1:], (ref_conv, ref_bn)):
        part.set_weights(source.get_weights())
    assert [layer.name for layer in named_layers(model)[1:]] == ["res2a_branch2a", "bn2a_branch2a"]
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [layer.name for layer in named_layers(again)[1:]] == ["res2a_branch2a", "bn2a_branch2a"]


@pytest.mark.parametrize("shape, kernel", [((2, 96, 96, 8), 1), ((2048, 3, 3, 8), 3)])  # pointwise, window
def test_bfloat16_fold_gradients_sum_over_a_large_map_like_float32(shape, kernel):
    """The shift's gradient (conv bias, beta, and part of gamma's) sums 18,432 positions; in
    bfloat16 it must still agree with float32 (a sum kept in bfloat16 stalls at 256x a term)."""
    x = np.random.default_rng(4).normal(size=shape).astype("float32")
    grads = {}
    for dtype in ("float32", "mixed_bfloat16"):
        fused, _, _ = _pair(shape, kernel, 1, "valid", train_bn=False, dtype=dtype)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(fused(x, training=True), tf.float32) * (np.arange(6, dtype="float32") + 1))
        grads[dtype] = dict(zip(["kernel", "bias", "gamma", "beta"], tape.gradient(loss, fused.trainable_variables)))
    for name, want in grads["float32"].items():
        np.testing.assert_allclose(grads["mixed_bfloat16"][name], want, rtol=0.03, atol=0.03 * np.abs(want).max(), err_msg=name)


def test_rejects_a_convolution_with_an_activation():
    with pytest.raises(ValueError, match="linear"):
        ConvBatchNorm(AdaptiveConv2D(4, 3, activation="relu"), FusedBatchNormalization())
