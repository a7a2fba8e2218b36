"""The fused optimizers take Keras' steps: same weights after a few updates, with and
without clipnorm (FusedSGD clips by scaling the rate, not the gradient)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detectlab.training.optimizers import FusedAdam, FusedSGD


def _run(optimizer, steps=3):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(0, 1, s).astype(np.float32)) for s in [(3, 3, 4, 8), (8,), (5, 2)]]
    for step in range(steps):
        # one gradient far above the clip norm, one below it, one of norm 0
        grads = [tf.constant(rng.normal(0, 10, (3, 3, 4, 8)).astype(np.float32)),
                 tf.constant(rng.normal(0, 0.01, (8,)).astype(np.float32)), tf.zeros((5, 2))]
        optimizer.apply(grads, variables)
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("clipnorm", [None, 1.0])
@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_sgd_matches_keras_sgd(clipnorm, nesterov):
    kwargs = dict(learning_rate=0.05, momentum=0.9, nesterov=nesterov, clipnorm=clipnorm)
    for ours, theirs in zip(_run(FusedSGD(**kwargs)), _run(keras.optimizers.SGD(**kwargs))):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_fused_sgd_clips_where_keras_would():
    unclipped = _run(FusedSGD(learning_rate=0.05, momentum=0.9), steps=1)[0]
    clipped = _run(FusedSGD(learning_rate=0.05, momentum=0.9, clipnorm=1.0), steps=1)[0]
    start = np.random.default_rng(0).normal(0, 1, (3, 3, 4, 8)).astype(np.float32)
    assert np.linalg.norm(clipped - start) == pytest.approx(0.05, rel=1e-4)  # lr * clipnorm
    assert np.linalg.norm(unclipped - start) > 1.0


@pytest.mark.parametrize("clipnorm", [None, 1.0])
def test_fused_adam_matches_keras_adam(clipnorm):
    for ours, theirs in zip(_run(FusedAdam(learning_rate=0.01, clipnorm=clipnorm)),
                            _run(keras.optimizers.Adam(learning_rate=0.01, clipnorm=clipnorm))):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
