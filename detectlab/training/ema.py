"""Weight EMA (``train.ema``): an exponential moving average of the model's weights.

After every training step ``ema = d * ema + (1 - d) * weights`` with a warm ramp
``d = decay * (1 - exp(-updates / ramp_steps))`` (Ultralytics' ``ModelEMA``), over every
floating-point weight of the model, batch-norm statistics included. The average is what is
evaluated and kept: the callback swaps it into the model when validation starts and at the end
of each epoch (before the COCO evaluation and the checkpoint, which it must precede in the
callback list), and swaps the training weights back when the next epoch starts. So
``val_loss``, ``val_AP``, ``best.keras``, ``last.keras`` and what is exported are the average;
training continues on its own weights, which :class:`AtomicCheckpoint` stores beside each
epoch file (``epoch_NNN.raw.npz``, with the update count) for ``--resume``. When training
ends the model holds the average.

The same callback works under ``fit``, under the alternating loop's ``CallbackList`` and under
a distribution strategy: it runs in the cross-replica context, where reading a mirrored weight
gives its (identical) value and assigning one sets every replica.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from detectlab.utils import atomic_path, log

RAW_SUFFIX = ".raw.npz"


def raw_weights_path(checkpoint) -> Path:
    """``epoch_003.keras`` -> ``epoch_003.raw.npz``: the training (non-averaged) weights."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".keras") + RAW_SUFFIX)


def _averaged(model) -> list:
    """The model's floating-point weights (trainable or not), in ``model.weights`` order."""
    return [w for w in model.weights if w.dtype in ("float16", "bfloat16", "float32", "float64")]


class WeightEMA(keras.callbacks.Callback):
    """``decay``: the average's decay once ramped up; ``ramp_steps``: the ramp's time constant
    in steps. One object lasts the whole run (its updates count on across stages)."""

    def __init__(self, decay: float = 0.9999, ramp_steps: float = 2000.0):
        super().__init__()
        self.decay, self.ramp_steps = float(decay), float(ramp_steps)
        self.updates = 0
        self.shadow: list[tf.Variable] | None = None  # the average
        self.backup: list[tf.Variable] | None = None  # the training weights while the average is swapped in
        self.swapped = False
        self._weights: list = []
        self._update_fn = None

    def current_decay(self, updates: int | None = None) -> float:
        """``d`` after ``updates`` steps (default: the steps taken so far)."""
        n = self.updates if updates is None else updates
        return self.decay * (1.0 - math.exp(-n / self.ramp_steps))

    # -- state ---------------------------------------------------------------------------

    def attach(self, model) -> None:
        """Start averaging ``model`` (the average starts at its current weights)."""
        if self.shadow is not None and self.model is model:
            return
        self.set_model(model)
        self._weights = _averaged(model)
        with tf.init_scope():
            self.shadow = [tf.Variable(w.value.read_value() if hasattr(w, "value") else w, trainable=False,
                                       name=f"ema_{i}") for i, w in enumerate(self._weights)]
            self.backup = [tf.Variable(tf.zeros_like(s), trainable=False) for s in self.shadow]
        self._update_fn = None

    def restore(self, raw: list[np.ndarray], updates: int) -> None:
        """Resume from a checkpoint loaded into the model: its weights become the average, the
        model goes back on the training weights ``raw``, and the update count is ``updates``."""
        if len(raw) != len(self._weights):
            raise ValueError(f"{len(raw)} saved training weights for {len(self._weights)} model weights")
        self._assign(self.shadow, self._weights)
        self._assign(self._weights, raw)
        self.updates, self.swapped = int(updates), False

    def raw_values(self) -> list[np.ndarray]:
        """The training weights (the backup while the average is swapped in)."""
        source = self.backup if self.swapped else self._weights
        return [keras.ops.convert_to_numpy(v) for v in source]

    def save_raw(self, path) -> None:
        """Write the training weights and the update count to ``path`` (``.npz``, atomically)."""
        values = {f"w{i:04d}": v for i, v in enumerate(self.raw_values())}
        with atomic_path(Path(path), ".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, updates=np.int64(self.updates), **values)

    @staticmethod
    def read_raw(path) -> tuple[list[np.ndarray], int]:
        with np.load(path) as data:
            names = sorted(k for k in data.files if k.startswith("w"))
            return [data[k] for k in names], int(data["updates"])

    # -- swapping ------------------------------------------------------------------------

    @staticmethod
    def _assign(targets, values) -> None:
        for target, value in zip(targets, values):
            target.assign(tf.cast(keras.ops.convert_to_tensor(value), target.dtype))

    def swap_in(self) -> None:
        """Put the average into the model (keeping the training weights aside)."""
        if self.shadow is None or self.swapped:
            return
        self._assign(self.backup, self._weights)
        self._assign(self._weights, self.shadow)
        self.swapped = True

    def swap_out(self) -> None:
        """Put the training weights back."""
        if self.swapped:
            self._assign(self._weights, self.backup)
            self.swapped = False

    def update(self) -> None:
        """One step of the average (one traced graph over every weight)."""
        if self._update_fn is None:
            pairs = [(s, w.value if hasattr(w, "value") else w) for s, w in zip(self.shadow, self._weights)]

            @tf.function(autograph=False)
            def step(d):
                for shadow, weight in pairs:
                    shadow.assign_sub((1.0 - d) * (shadow - tf.cast(weight, shadow.dtype)))

            self._update_fn = step
        self.updates += 1
        self._update_fn(tf.constant(self.current_decay(), tf.float32))

    # -- callback ------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.attach(self.model)
        self.swap_out()  # a new stage trains on from the training weights

    def on_epoch_begin(self, epoch, logs=None):
        self.swap_out()

    def on_train_batch_end(self, batch, logs=None):
        self.update()

    def on_test_begin(self, logs=None):
        self.swap_in()

    def on_epoch_end(self, epoch, logs=None):
        self.swap_in()
        if epoch == 0 and self.updates < self.ramp_steps:
            log.info("weight EMA: decay %.4f after %d steps (ramp %g steps)", self.current_decay(), self.updates,
                     self.ramp_steps)
