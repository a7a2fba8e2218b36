"""Box codings: the one definition of how each family's regression values relate to boxes.

Every coder is a small frozen dataclass that round-trips through ``get_config`` /
``from_config`` (plain dicts, so layers can keep it in their own config). The loader's target
encoders, the ROI sampler, the losses and the in-graph decoders all call the same coder, so
training targets and inference decoding cannot drift apart.

- :class:`DeltaCoder` (R-CNN families): centre offsets and log size ratios of a box against a
  reference box (anchor, proposal or ROI), scaled per component. It runs on numpy arrays (the
  loader side) and on TensorFlow tensors (in-graph) from the same code.
- :class:`YoloGridCoder` (YOLOv3): raw head outputs at a grid cell and anchor <-> normalised
  box centre and size; in-graph only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal

import numpy as np

_NUMPY = SimpleNamespace(
    stack=lambda parts: np.stack(parts, -1).astype(np.float32),
    log=np.log,
    exp=np.exp,
    minimum=np.minimum,
    unit_clip=lambda x: np.clip(x, 0.0, 1.0),
)


def _math(x):
    """numpy functions for numpy input, TensorFlow's for tensors (TensorFlow imported lazily,
    so the loader side never needs it)."""
    if isinstance(x, (np.ndarray, np.generic, float, int)):
        return _NUMPY
    import tensorflow as tf

    return SimpleNamespace(
        stack=lambda parts: tf.stack(parts, axis=-1),
        log=tf.math.log,
        exp=tf.exp,
        minimum=tf.minimum,
        unit_clip=lambda x: tf.clip_by_value(x, 0.0, 1.0),
    )


class _Serialisable:
    def get_config(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_config(cls, config):
        """A coder from its config dict (or the coder itself); there is no default coding."""
        if config is None:
            raise ValueError(f"a {cls.__name__} is required (the family's coding; there is no default)")
        return config if isinstance(config, cls) else cls(**config)


@dataclass(frozen=True)
class DeltaCoder(_Serialisable):
    """Box <-> deltas against a reference box. Boxes are ``(..., 4)`` ``y1, x1, y2, x2`` (any
    unit, the same for both); deltas are ``(..., 4)``.

    The plain deltas are ``dy = (cy - cy_ref) / h_ref``, ``dx = (cx - cx_ref) / w_ref``,
    ``dh = log(h / h_ref)``, ``dw = log(w / w_ref)``. ``order`` gives their coded order:
    ``"yx"`` keeps ``(dy, dx, dh, dw)`` (matterport), ``"xy"`` is keras-frcnn's ``(tx, ty, tw,
    th)`` = ``(dx, dy, dw, dh)``. The coded values are the plain ones times ``weights`` (in the
    coded order). Decoding caps the log size ratios at ``max_log_ratio`` (``exp(4)`` ~ 55x).
    """

    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    order: Literal["yx", "xy"] = "yx"
    max_log_ratio: float = 4.0

    def __post_init__(self):
        weights = tuple(float(w) for w in np.broadcast_to(np.asarray(self.weights, np.float64), (4,)))
        object.__setattr__(self, "weights", weights)
        if self.order not in ("yx", "xy"):
            raise ValueError(f"DeltaCoder.order: 'yx' or 'xy', got {self.order!r}")
        if min(weights) <= 0:
            raise ValueError(f"DeltaCoder.weights: must be positive, got {weights}")

    @classmethod
    def keras_frcnn(cls, std) -> DeltaCoder:
        """keras-frcnn: ``(tx, ty, tw, th)`` multiplied by ``std`` (one number, e.g. the RPN's
        4, or four, e.g. the classifier's ``(8, 8, 4, 4)``)."""
        return cls(weights=std, order="xy")

    @classmethod
    def matterport(cls, std) -> DeltaCoder:
        """matterport Mask R-CNN: ``(dy, dx, dh, dw)`` divided by ``std`` (``(0.1, 0.1, 0.2, 0.2)``)."""
        return cls(weights=tuple(1.0 / float(s) for s in np.broadcast_to(std, (4,))), order="yx")

    def encode(self, reference, boxes):
        """Coded deltas taking ``reference (..., 4)`` onto ``boxes (..., 4)``."""
        m = _math(reference)
        h = reference[..., 2] - reference[..., 0]
        w = reference[..., 3] - reference[..., 1]
        bh = boxes[..., 2] - boxes[..., 0]
        bw = boxes[..., 3] - boxes[..., 1]
        dy = (boxes[..., 0] + 0.5 * bh - reference[..., 0] - 0.5 * h) / h
        dx = (boxes[..., 1] + 0.5 * bw - reference[..., 1] - 0.5 * w) / w
        dh, dw = m.log(bh / h), m.log(bw / w)
        plain = (dy, dx, dh, dw) if self.order == "yx" else (dx, dy, dw, dh)
        return m.stack([v * k for v, k in zip(plain, self.weights)])

    def decode(self, reference, deltas, clip: bool = False):
        """Boxes ``(..., 4)`` from ``reference (..., 4)`` and coded ``deltas (..., 4)``: the
        inverse of :meth:`encode`. ``clip``: clip to ``[0, 1]`` (normalised boxes)."""
        m = _math(deltas)
        coded = [deltas[..., k] / self.weights[k] for k in range(4)]
        dy, dx, dh, dw = coded if self.order == "yx" else (coded[1], coded[0], coded[3], coded[2])
        h = reference[..., 2] - reference[..., 0]
        w = reference[..., 3] - reference[..., 1]
        cy = reference[..., 0] + 0.5 * h + dy * h
        cx = reference[..., 1] + 0.5 * w + dx * w
        h = h * m.exp(m.minimum(dh, self.max_log_ratio))
        w = w * m.exp(m.minimum(dw, self.max_log_ratio))
        boxes = m.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w])
        return m.unit_clip(boxes) if clip else boxes


@dataclass(frozen=True)
class YoloGridCoder(_Serialisable):
    """YOLOv3's box coding at one output scale (in-graph).

    A scale's raw output ``(B, g_h, g_w, A, 5 + C)`` has stride ``32 / 2**level``; at cell
    ``(col, row)`` with anchor ``(w_a, h_a)`` (input pixels) the raw ``(tx, ty, tw, th)`` mean
    the normalised box centre ``((sigmoid(tx) + col) / g_w, (sigmoid(ty) + row) / g_h)`` and
    size ``(exp(tw) w_a / W, exp(th) h_a / H)`` (``W, H`` the input size). Decoding caps ``tw, th``
    at ``max_log_ratio``. Boxes here are ``cx, cy, w, h`` normalised to the input.
    """

    max_log_ratio: float = 10.0

    @staticmethod
    def geometry(raw, level: int):
        """``(cells (g_h, g_w, 1, 2) x/y offsets, grid_wh (2,), input_wh (2,))`` of a raw output."""
        import tensorflow as tf

        shape = tf.shape(raw)
        gy, gx = tf.meshgrid(tf.range(shape[1]), tf.range(shape[2]), indexing="ij")
        cells = tf.cast(tf.stack([gx, gy], -1)[:, :, None, :], tf.float32)
        grid_wh = tf.cast(tf.stack([shape[2], shape[1]]), tf.float32)
        return cells, grid_wh, grid_wh * (32.0 / 2**level)

    def decode(self, raw_xy, raw_wh, anchors, level: int):
        """Raw ``(..., A, 2)`` xy and wh -> normalised ``cx, cy, w, h`` ``(..., A, 4)``;
        ``anchors (A, 2)`` w, h in input pixels."""
        import tensorflow as tf

        cells, grid_wh, input_wh = self.geometry(raw_xy, level)
        xy = (tf.sigmoid(raw_xy) + cells) / grid_wh
        wh = tf.exp(tf.minimum(raw_wh, self.max_log_ratio)) * anchors / input_wh
        return tf.concat([xy, wh], -1)

    def encode(self, boxes, anchors, level: int, present):
        """Normalised ``cx, cy, w, h`` targets ``(B, g_h, g_w, A, 4)`` -> what the raw output
        should give for them: ``(offsets in the cell (..., 2), log size ratios (..., 2))``, i.e.
        ``sigmoid(tx, ty)`` and ``tw, th`` of :meth:`decode`. Where ``present (..., 1)`` is 0
        (no object) the log ratio is 0."""
        import tensorflow as tf

        cells, grid_wh, input_wh = self.geometry(boxes, level)
        offsets = boxes[..., 0:2] * grid_wh - cells
        ratio = boxes[..., 2:4] * input_wh / anchors
        logs = tf.where(present > 0, tf.math.log(tf.maximum(ratio, 1e-9)), tf.zeros_like(ratio))
        return offsets, logs


def _plain(value):
    return [float(v) for v in value] if isinstance(value, tuple) else value
