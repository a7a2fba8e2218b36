"""``register_loss``: put a loss term in ``LOSSES`` and make it Keras-serialisable."""

from __future__ import annotations

import keras

from detectlab.registry import LOSSES


def register_loss(name: str):
    """Register a loss-term function under ``name`` (``LOSSES`` and Keras' registry)."""

    def decorator(fn):
        fn = keras.saving.register_keras_serializable(package="detectlab", name=name)(fn)
        LOSSES.register(name, fn)
        return fn

    return decorator
