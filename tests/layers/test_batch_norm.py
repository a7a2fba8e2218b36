import keras
import numpy as np
import tensorflow as tf

from detectlab.layers.batch_norm import FusedBatchNormalization


def test_fused_matches_keras_batch_norm_forward_backward_and_updates():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4, 6, 6, 5)) * 3 + 1).astype("float32")
    ref, fused = keras.layers.BatchNormalization(epsilon=1e-3), FusedBatchNormalization(epsilon=1e-3)
    ref.build(x.shape)
    fused.build(x.shape)
    weights = [rng.uniform(0.5, 1.5, 5), rng.normal(size=5), rng.normal(size=5), rng.uniform(0.5, 1.5, 5)]
    ref.set_weights([w.astype("float32") for w in weights])
    fused.set_weights([w.astype("float32") for w in weights])
    np.testing.assert_allclose(fused(x, training=False), ref(x, training=False), atol=1e-5)
    with tf.GradientTape(persistent=True) as tape:
        a = tf.reduce_sum(ref(x, training=True) ** 2)
        b = tf.reduce_sum(fused(x, training=True) ** 2)
    for ga, gb in zip(tape.gradient(a, ref.trainable_variables), tape.gradient(b, fused.trainable_variables)):
        np.testing.assert_allclose(gb, ga, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(fused.moving_mean, ref.moving_mean, atol=1e-6)
    # TensorFlow's fused kernel feeds the unbiased batch variance to the moving average
    np.testing.assert_allclose(fused.moving_variance, ref.moving_variance, rtol=1e-3)


def test_frozen_fused_batch_norm_uses_moving_statistics():
    bn = FusedBatchNormalization()
    x = np.random.default_rng(1).normal(size=(2, 3, 3, 4)).astype("float32") + 5
    bn.build(x.shape)
    bn.trainable = False
    np.testing.assert_allclose(bn(x, training=True), x / np.sqrt(1 + 1e-3), rtol=1e-5)
