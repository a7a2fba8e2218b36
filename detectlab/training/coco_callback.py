"""COCO evaluation during training, as a plain ``keras.callbacks.Callback``.

:class:`CocoEvaluation` runs every ``eval.interval`` epochs (and at the last epoch of each
stage) under Keras ``fit`` and under the alternating loop's ``CallbackList`` alike. It
scores the validation split (its first ``eval.max_images`` images) through
:class:`detectlab.evaluation.evaluate.Evaluator` — the path ``tools/evaluate.py`` takes,
in float32 whatever the training precision — and puts into the epoch logs:

- ``val_AP``, ``val_AP50``, ``val_AP75`` (bbox), ``val_mask_AP``, ``val_mask_AP50`` (segm,
  Mask R-CNN), and ``val_AP50_<class>`` for each class with validation instances.

Placed before TensorBoard, CSVLogger, the checkpoint and EarlyStopping/ReduceLROnPlateau,
the same names reach History, ``history.csv``, the progress line and TensorBoard (which
files ``val_*`` under ``validation/`` as ``epoch_*``), and can be monitored. Epochs between
evaluations do not log them (as Keras' ``validation_freq``): History lists them per
evaluation and :class:`CsvLogger` writes ``NA``. At each evaluation the first
``eval.tensorboard_images`` images are drawn (prediction | ground truth) into ``logs/images``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import keras
import numpy as np

from detectlab.config import Config
from detectlab.data.records import DetectionDataset
from detectlab.errors import ConfigError
from detectlab.utils import log

IMAGE_TAG = "val_predictions"
CELL = 256  # px of each half of a TensorBoard image (prediction | ground truth)


def class_key(name: str) -> str:
    """The log name of a class's AP50: ``val_AP50_<name>`` (non-word characters -> ``_``)."""
    return "val_AP50_" + re.sub(r"[^0-9A-Za-z_.-]+", "_", name)


def epoch_values(metrics: dict) -> dict[str, float]:
    """Evaluation ``metrics`` -> the callback's epoch-log values (names above)."""
    bbox = metrics["bbox"]
    values = {"val_AP": bbox["AP"], "val_AP50": bbox["AP50"], "val_AP75": bbox["AP75"]}
    if "segm" in metrics:
        values.update(val_mask_AP=metrics["segm"]["AP"], val_mask_AP50=metrics["segm"]["AP50"])
    for name, v in bbox["per_class"].items():
        if v["instances"] > 0:
            values[class_key(name)] = v["AP50"]
    return values


class CocoEvaluation(keras.callbacks.Callback):
    """``dataset``: the validation split; ``with_masks``: the model predicts masks;
    ``log_dir``: the run's TensorBoard folder (None: no images)."""

    def __init__(self, cfg: Config, dataset: DetectionDataset, with_masks: bool = False, log_dir=None):
        super().__init__()
        e = cfg.eval
        if e.interval < 0:
            raise ConfigError(f"eval.interval: expected epochs >= 0 (0: off), got {e.interval}")
        if e.max_images is not None and e.max_images < 1:
            raise ConfigError(f"eval.max_images: expected a positive number of images or null, got {e.max_images}")
        self.cfg = cfg
        self.interval = int(e.interval)
        self.total = len(dataset)
        self.dataset = dataset.head(e.max_images) if e.max_images else dataset
        self.with_masks = with_masks
        self.image_count = min(e.tensorboard_images, len(self.dataset)) if log_dir is not None else 0
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.seconds: list[float] = []  # wall time of each evaluation
        self._evaluator = self._twin = self._writer = None
        self.strategy, self.chief = None, True

    def share(self, strategy, chief: bool) -> None:
        """In a multi-worker run: only the chief evaluates, and every worker logs its values
        (so early stopping and learning-rate schedules decide alike everywhere)."""
        self.strategy, self.chief = strategy, chief

    def names(self) -> tuple[str, ...]:
        """The names this callback logs (known before training, for the monitor check)."""
        if not self.interval:
            return ()
        names = ["val_AP", "val_AP50", "val_AP75"] + (["val_mask_AP", "val_mask_AP50"] if self.with_masks else [])
        counts = self.dataset.class_counts()
        return tuple(names + [class_key(n) for n, c in zip(self.dataset.class_names, counts) if c > 0])

    def due(self, epoch: int) -> bool:
        last = epoch + 1 == (self.params or {}).get("epochs")
        return self.interval > 0 and ((epoch + 1) % self.interval == 0 or last)

    def on_train_begin(self, logs=None):
        if self.interval > 0 and len(self.dataset) < self.total:
            log.info("COCO evaluation during training scores the first %d of %d validation images (eval.max_images)",
                     len(self.dataset), self.total)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.due(epoch) or getattr(self.model, "stop_training", False):
            return
        start = time.perf_counter()
        evaluation = self._evaluator_for(self.model).run() if self.chief else None
        values = epoch_values(evaluation.metrics) if evaluation else {}
        if self.strategy is not None:
            from detectlab.training.distributed import from_chief

            shared = from_chief(self.strategy, {n: float(values.get(n, np.nan)) for n in self.names()})
            values = {**values, **{n: float(v) for n, v in shared.items()}}
        logs.update(values)
        if self.image_count and evaluation is not None:
            self._write_images(epoch, evaluation.detections)
        self.seconds.append(time.perf_counter() - start)
        mask = f" mask AP {values['val_mask_AP']:.3f} AP50 {values['val_mask_AP50']:.3f}" if "val_mask_AP" in values else ""
        by = "" if self.chief else " (the chief's)"
        log.info("epoch %d: COCO evaluation%s of %d images in %.1f s: AP %.3f AP50 %.3f AP75 %.3f%s", epoch + 1, by,
                 len(self.dataset), self.seconds[-1], values["val_AP"], values["val_AP50"], values["val_AP75"], mask)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _evaluator_for(self, model):
        """An evaluator on ``model`` itself in float32, else on a float32 twin holding its
        current weights (so the numbers are those ``tools/evaluate.py`` prints)."""
        from detectlab.evaluation.evaluate import Evaluator, float32_policy

        if model.compute_dtype != "float32":
            if self._twin is None:
                with float32_policy():
                    self._twin = type(model).from_config(model.get_config())
            self._twin.set_weights(model.get_weights())
            model = self._twin
        if self._evaluator is None:
            self._evaluator = Evaluator(model, self.cfg, self.dataset)
        return self._evaluator

    def _write_images(self, epoch: int, detections) -> None:
        import tensorflow as tf

        from detectlab.inference.predictor import Detections
        from detectlab.inference.visualize import captioned_pair, draw_resized

        names = self.dataset.class_names
        tiles = []
        for i in range(self.image_count):
            image, record = self.dataset.load_image(i), self.dataset[i]
            masks = self.dataset.load_masks(i) if self.with_masks else None
            truth = Detections(record.boxes, np.ones(len(record.boxes), np.float32), record.class_ids, masks)
            predicted = draw_resized(image, detections[i].above(self.cfg.predict.score_threshold), names, CELL)
            tiles.append(captioned_pair(predicted, draw_resized(image, truth, names, CELL, scores=False), ("prediction", "ground truth"), CELL))
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "images"))
        with self._writer.as_default():
            tf.summary.image(IMAGE_TAG, np.stack(tiles), step=epoch, max_outputs=len(tiles))
        self._writer.flush()


class CsvLogger(keras.callbacks.CSVLogger):
    """``keras.callbacks.CSVLogger`` whose columns also hold ``later`` names, logged only on
    some epochs (evaluations): those epochs write their values, the others ``NA``."""

    def __init__(self, filename, append: bool = False, later: tuple[str, ...] = ()):
        super().__init__(filename, append=append)
        self.later = tuple(later)

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = sorted(set(logs or {}) | set(self.later))
        super().on_epoch_end(epoch, logs)
