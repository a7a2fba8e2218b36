"""Darknet's batch norm in a Keras ``BatchNormalization``, exactly.

Darknet normalises with ``(x - mean) / (sqrt(var) + 1e-6)``; Keras with
``(x - mean) / sqrt(var + epsilon)`` (our YOLO layers: epsilon 1e-3, keras-yolo3's choice).
No single epsilon makes the two equal for every variance, but the ratio is a per-channel
constant, so it is folded into ``gamma`` when a Darknet file is read:

    gamma_keras = gamma_darknet * sqrt(var + epsilon) / (sqrt(var) + 1e-6)

and taken out again when one is written. In inference mode the layer then computes
Darknet's output (to float32 rounding); the model stays a plain Keras model (same layers,
config and checkpoints). The fold is computed in float64. Training afterwards uses batch
statistics as any Keras model would.
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
