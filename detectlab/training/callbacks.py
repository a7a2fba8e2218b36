"""Callbacks of our own; they work under ``fit`` and under a ``CallbackList`` driven by an
alternating ``train_on_batch`` loop alike (they only read ``logs`` and ``self.model``).

- :class:`LearningRateLogger` puts ``learning_rate`` into batch and epoch logs, so the
  progress bar, CSV and TensorBoard show it (place it before them).
- :class:`NonFiniteLossGuard` stops training when a logged loss becomes NaN/inf and
  remembers which one.
- :class:`AtomicCheckpoint` writes ``epoch_NNN.keras``, ``last.keras``, ``best.keras`` and
  ``state.json`` atomically, never after a non-finite loss.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from detectlab.checkpoints import STATE_FILE, read_state
from detectlab.errors import TrainingError
from detectlab.utils import atomic_path, atomic_write_json, log



def _current_lr(model) -> float | None:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class LearningRateLogger(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        lr = _current_lr(self.model)
        if logs is not None and lr is not None:
            logs["learning_rate"] = lr

    def on_epoch_end(self, epoch, logs=None):
        self.on_train_batch_end(0, logs)


class SmoothedPlateau(keras.callbacks.ReduceLROnPlateau):
    """``ReduceLROnPlateau`` watching an exponential moving average of its monitor:
    ``s = smoothing * s + (1 - smoothing) * value`` over the epochs that log it (the others,
    between evaluations, are skipped). Other callbacks still see the raw value."""

    def __init__(self, smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.smoothing = smoothing
        self.smoothed = None

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        value = logs.get(self.monitor)
        if value is None:
            return  # no evaluation this epoch: nothing to count
        value = float(value)
        self.smoothed = value if self.smoothed is None else self.smoothing * self.smoothed + (1 - self.smoothing) * value
        logs[self.monitor] = self.smoothed
        super().on_epoch_end(epoch, logs)


@dataclass
class NonFiniteEvent:
    name: str
    value: float
    epoch: int
    batch: int

    def message(self) -> str:
        return f"loss '{self.name}' became {self.value} at epoch {self.epoch + 1}, batch {self.batch + 1}"


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop at the first batch whose named losses are not all finite."""

    def __init__(self, names: tuple[str, ...] | None = None):
        super().__init__()
        self.names = names
        self.event: NonFiniteEvent | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.event is not None or not logs:
            return
        names = self.names or [k for k in logs if k.endswith("loss")]
        for name in names:
            value = logs.get(name)
            if value is not None and not math.isfinite(float(value)):
                self.event = NonFiniteEvent(name, float(value), self._epoch, batch)
                log.error("stopping: %s", self.event.message())
                self.model.stop_training = True
                return


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the whole model (weights + optimizer state) at the end of every epoch.

    Files in ``directory``: ``epoch_NNN.keras`` (the newest ``keep``), ``last.keras``,
    ``best.keras`` (by ``monitor``: ``mode`` "min" or "max" says which way is better; an
    epoch that does not log it, e.g. between evaluations, is not ranked) and ``state.json``
    with the number of finished epochs and ``best_epoch``, written last so it always names
    complete files.
    """

    def __init__(self, directory, keep: int = 3, monitor: str = "val_loss", guard: NonFiniteLossGuard | None = None,
                 extra_state: dict | None = None, mode: str = "min"):
        super().__init__()
        self.directory = Path(directory)
        self.keep = int(keep)
        self.monitor = monitor
        self.mode = mode
        self.guard = guard
        self.extra_state = dict(extra_state or {})
        previous = read_state(self.directory)
        same = previous is not None and previous.get("monitor") == monitor and previous.get("mode", "min") == mode
        self.best = previous.get("best") if same else None
        self.best_epoch = previous.get("best_epoch") if same else None
        remove_partial_checkpoints(self.directory)

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def on_epoch_end(self, epoch, logs=None):
        try:
            self._save(epoch, logs)
        except OSError as exc:
            where = exc.filename or self.directory
            kept = read_state(self.directory)
            previous = f"{kept['checkpoint']} and {STATE_FILE} are unchanged" if kept else "no earlier checkpoint"
            raise TrainingError(
                f"{where}: cannot write the epoch {epoch + 1} checkpoint: {exc.strerror or exc}; {previous}"
            ) from None

    def _save(self, epoch, logs=None):
        logs = dict(logs or {})
        if (self.guard is not None and self.guard.event is not None) or not _finite(logs):
            log.warning("epoch %d: not saving a checkpoint after a non-finite loss", epoch + 1)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        epoch_file = self.directory / f"epoch_{epoch + 1:03d}.keras"
        with atomic_path(epoch_file, ".keras") as tmp:
            try:
                self.model.save(tmp)
            except OSError as exc:
                exc.filename = str(epoch_file)
                raise
        _replace_with_link(epoch_file, self.directory / "last.keras")
        value = logs.get(self.monitor)
        if value is not None and self._better(float(value)):
            self.best, self.best_epoch = float(value), epoch + 1
            _replace_with_link(epoch_file, self.directory / "best.keras")
        atomic_write_json(
            self.directory / STATE_FILE,
            {
                **self.extra_state,
                "epoch": epoch + 1,
                "checkpoint": epoch_file.name,
                "monitor": self.monitor,
                "mode": self.mode,
                "best": self.best,
                "best_epoch": self.best_epoch,
                "logs": {k: float(v) for k, v in logs.items() if np.isscalar(v)},
            },
        )
        self._prune()

    def _prune(self) -> None:
        epochs = sorted(self.directory.glob("epoch_*.keras"))
        for old in epochs[: max(0, len(epochs) - self.keep)]:
            old.unlink(missing_ok=True)


def remove_partial_checkpoints(directory) -> int:
    """Delete the hidden ``.*.tmp.keras`` files a killed checkpoint write leaves behind."""
    leftovers = sorted(Path(directory).glob(".*.tmp.keras"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        log.info("removed %d unfinished checkpoint file(s) in %s", len(leftovers), directory)
    return len(leftovers)


def _finite(logs: dict) -> bool:
    return all(math.isfinite(float(v)) for k, v in logs.items() if k.endswith("loss") and np.isscalar(v))


def _replace_with_link(source: Path, target: Path) -> None:
    """Atomically make ``target`` the same file as ``source`` (hard link, else a copy)."""
    with atomic_path(target, ".keras") as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            import shutil

            shutil.copyfile(source, tmp)


class TensorBoardLogger(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, with batch steps continuing across stages/resumes."""

    start_step = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._global_train_batch = self.start_step
