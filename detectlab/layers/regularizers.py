"""L2 weight penalty on TensorFlow's fused ``L2Loss`` kernel."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="detectlab")
class L2(keras.regularizers.Regularizer):
    """``l2 * sum(w ** 2)``, exactly ``keras.regularizers.L2``, computed in one pass
    (``tf.nn.l2_loss`` = ``sum(w ** 2) / 2``) without a temporary the size of ``w``."""

    def __init__(self, l2: float = 0.01):
        self.l2 = float(l2)

    def __call__(self, x):
        return (2.0 * self.l2) * tf.nn.l2_loss(x)

    def get_config(self):
        return {"l2": self.l2}
