"""Another code base's batch-norm epsilon in our ``BatchNormalization``, exactly.

In inference mode a batch norm computes ``gamma * (x - mean) / d(var) + beta``; when the
weights come from a normalisation with another ``d`` the per-channel ratio of the two is
folded into ``gamma``, so the layer gives the source's outputs and stays a plain Keras
layer (same config, checkpoints). Computed in float64.

Darknet normalises with ``(x - mean) / (sqrt(var) + 1e-6)``; Keras with
``(x - mean) / sqrt(var + epsilon)`` (our YOLO layers: epsilon 1e-3, keras-yolo3's choice).
No single epsilon makes the two equal for every variance, but the ratio is a per-channel
constant, so it is folded into ``gamma`` when a Darknet file is read:

    gamma_keras = gamma_darknet * sqrt(var + epsilon) / (sqrt(var) + 1e-6)

and taken out again when one is written. Keras' ImageNet ResNets use epsilon 1.001e-5
(:func:`gamma_for_epsilon`). Training on batch statistics afterwards normalises the Keras
way, as any Keras model does.
"""

from __future__ import annotations

import numpy as np

DARKNET_EPSILON = 1e-6  # added to the standard deviation, not the variance


def _ratio(variance, epsilon: float) -> np.ndarray:
    var = np.maximum(np.asarray(variance, np.float64), 0.0)
    return np.sqrt(var + epsilon) / (np.sqrt(var) + DARKNET_EPSILON)


def darknet_gamma_to_keras(gamma, variance, epsilon: float) -> np.ndarray:
    """Darknet ``scales`` -> the ``gamma`` of a Keras batch norm with ``epsilon``, ``(C,)`` float32."""
    return (np.asarray(gamma, np.float64) * _ratio(variance, epsilon)).astype(np.float32)


def keras_gamma_to_darknet(gamma, variance, epsilon: float) -> np.ndarray:
    """The inverse of :func:`darknet_gamma_to_keras`."""
    return (np.asarray(gamma, np.float64) / _ratio(variance, epsilon)).astype(np.float32)


def gamma_for_epsilon(gamma, variance, source_epsilon: float, epsilon: float) -> np.ndarray:
    """``gamma`` of a batch norm with ``source_epsilon`` -> the same function with ``epsilon``."""
    var = np.maximum(np.asarray(variance, np.float64), 0.0)
    return (np.asarray(gamma, np.float64) * np.sqrt(var + epsilon) / np.sqrt(var + source_epsilon)).astype(np.float32)
