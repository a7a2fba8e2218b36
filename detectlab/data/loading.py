"""Resolve a recipe's ``data`` section into datasets (writing the shapes data if asked)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from detectlab.config import Config
from detectlab.data.coco import load_coco
from detectlab.data.records import DetectionDataset
from detectlab.data.shapes import write_shapes_dataset
from detectlab.errors import ConfigError


def load_split(cfg: Config, split: str, workdir: str | os.PathLike | None = None) -> DetectionDataset | None:
    """The ``train`` or ``val`` dataset of ``cfg`` (None when ``data.val`` is null)."""
    source = cfg.data.train if split == "train" else cfg.data.val
    if source is None:
        return None
    images = cfg.data.images if split == "train" else cfg.data.val_images
    if source == "shapes":
        s = cfg.data.shapes
        root = Path(workdir or ".") / "shapes"
        source = write_shapes_dataset(root, s.train, s.val, s.size, s.seed)[split]
        images = None
    return load_coco(source, images, cfg.data.include_empty_images, cfg.data.invalid_boxes)


def resolve_num_classes(cfg: Config, dataset: DetectionDataset) -> int:
    if cfg.model.num_classes is None:
        return dataset.num_classes
    if cfg.model.num_classes != dataset.num_classes:
        raise ConfigError(
            f"model.num_classes is {cfg.model.num_classes} but {dataset.annotation_file} has "
            f"{dataset.num_classes} categories"
        )
    return cfg.model.num_classes


def resolve_class_weights(spec, dataset: DetectionDataset) -> list[float] | None:
    """``loss.class_weights`` -> one weight per class (or None)."""
    if spec is None:
        return None
    names = dataset.class_names
    if spec == "balanced":
        counts = dataset.class_counts().astype(np.float64)
        weights = counts.sum() / (len(counts) * np.maximum(counts, 1))
        return [float(w) for w in weights]
    if isinstance(spec, list):
        if len(spec) != len(names) or not all(isinstance(w, (int, float)) for w in spec):
            raise ConfigError(f"loss.class_weights: expected {len(names)} numbers (one per class), got {spec!r}")
        return [float(w) for w in spec]
    if isinstance(spec, dict):
        unknown = [k for k in spec if k not in names]
        if unknown:
            raise ConfigError(f"loss.class_weights: unknown class '{unknown[0]}'; classes: {', '.join(names)}")
        return [float(spec.get(n, 1.0)) for n in names]
    raise ConfigError("loss.class_weights: expected null, 'balanced', a list or a mapping name -> weight")
