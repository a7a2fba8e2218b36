"""``register_loss``: put a loss term in ``LOSSES`` and make it Keras-serialisable.

A loss term is a function of its family's *context* (everything a term may read, prepared
once per step by the family's criterion, e.g. :class:`detectlab.losses.yolo.YoloScale`)
returning a float32 scalar. Its registration says which family it belongs to, its ``role``
(``"box"``: a box-regression term, what ``loss.box`` swaps) and, for families trained in
parts (Faster R-CNN's RPN and classifier views), its ``group``.
"""

from __future__ import annotations

import keras

from detectlab.registry import LOSSES


def register_loss(name: str, family: str, role: str = "other", group: str | None = None):
    """Register a loss-term function under ``name`` (``LOSSES`` and Keras' registry)."""

    def decorator(fn):
        fn = keras.saving.register_keras_serializable(package="detectlab", name=name)(fn)
        fn.loss_family, fn.loss_role, fn.loss_group = family, role, group
        LOSSES.register(name, fn)
        return fn

    return decorator
