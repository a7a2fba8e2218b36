"""Resolve a recipe's ``data`` section into datasets (writing the shapes data if asked)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from detectlab.config import Config
from detectlab.data.image_check import check_images
from detectlab.data.records import DetectionDataset
from detectlab.data.shapes import write_shapes_dataset
from detectlab.errors import ConfigError, DataError
from detectlab.registry import DATASET_FORMATS
from detectlab.utils import log


def load_split(cfg: Config, split: str, workdir: str | os.PathLike | None = None) -> DetectionDataset | None:
    """The ``train`` or ``val`` dataset of ``cfg`` (None when ``data.val`` is null and
    ``data.val_fraction`` is 0), its images checked (``data.bad_images``).

    With ``data.val`` null and ``data.val_fraction`` > 0, ``val`` is that share of the
    training data (seeded by ``train.seed``) and ``train`` the rest.
    """
    d = cfg.data
    if d.val is None and d.val_fraction > 0:
        return _held_out(cfg, workdir)[split]
    if split == "val" and d.val is None:
        return None
    dataset = _load_checked(cfg, split, workdir)
    if split == "train":
        warn_max_boxes(dataset, d.max_boxes)
    return dataset


def load_splits(cfg: Config, workdir: str | os.PathLike | None = None):
    """``(train, val)`` as :func:`load_split` gives them, each file read and checked once
    (a held-out validation share comes from the same read of the training data)."""
    d = cfg.data
    if d.val is None and d.val_fraction > 0:
        parts = _held_out(cfg, workdir)
        return parts["train"], parts["val"]
    return load_split(cfg, "train", workdir), load_split(cfg, "val", workdir)


def _held_out(cfg: Config, workdir) -> dict:
    d = cfg.data
    parts = holdout_split(_load_checked(cfg, "train", workdir), d.val_fraction, cfg.train.seed, d.train)
    log.info("validating on %d images held out of %s (data.val_fraction=%g, seed %d); pass --val to choose them",
             len(parts["val"]), d.train, d.val_fraction, cfg.train.seed)
    warn_max_boxes(parts["train"], d.max_boxes)
    return parts


def holdout_split(dataset: DetectionDataset, fraction: float, seed: int, source: str = "") -> dict:
    """``{"train", "val"}``: a seeded random ``fraction`` of the images for validation."""
    n = len(dataset)
    count = int(round(n * fraction))
    if n < 2 or not 0 < count < n:
        raise DataError(
            f"{source}: cannot hold out {fraction:.0%} of {n} images for validation; pass --val (or --val none)"
        )
    order = np.random.default_rng(seed).permutation(n)
    val_index = set(order[:count].tolist())
    records = dataset.records
    return {
        "train": dataset.subset([r for i, r in enumerate(records) if i not in val_index]),
        "val": dataset.subset([r for i, r in enumerate(records) if i in val_index]),
    }


def warn_max_boxes(dataset: DetectionDataset, max_boxes: int) -> None:
    """Warn once when images have more instances than the targets can hold."""
    counts = np.array([r.num_instances for r in dataset.records])
    over = counts > max_boxes
    if over.any():
        worst = dataset.records[int(np.argmax(counts))]
        log.warning(
            "%d images have more than data.max_boxes=%d instances (up to %d in %s): the extra ones are left out "
            "of the training targets; set data.max_boxes=%d to keep them all",
            int(over.sum()), max_boxes, int(counts.max()), worst.path, int(counts.max()),
        )


def _load_checked(cfg: Config, split: str, workdir) -> DetectionDataset:
    dataset = _load(cfg, split, workdir)
    return check_images(dataset, cfg.data.bad_images, dataset.annotation_file or str(cfg.data.train))


def _load(cfg: Config, split: str, workdir) -> DetectionDataset:
    d = cfg.data
    source = d.train if split == "train" else d.val
    images = d.images if split == "train" else d.val_images
    fmt = d.format
    if source == "shapes":
        s = d.shapes
        root = Path(workdir or ".") / "shapes"
        source, images, fmt = write_shapes_dataset(root, s.train, s.val, s.size, s.seed)[split], None, "coco"
    fmt = detect_format(source) if fmt == "auto" else fmt
    options = {}
    if fmt in ("voc", "yolo"):
        options["split"] = d.train_split if split == "train" else d.val_split
    if fmt == "yolo" and Path(source).is_file():  # a data.yaml: its train/val keys
        options["split"] = options["split"] or split
    if fmt != "coco" and d.classes:
        options["classes"] = d.classes
    return DATASET_FORMATS.get(fmt)(source, images, d.include_empty_images, d.invalid_boxes, **options)


def detect_format(path: str) -> str:
    """The dataset format of ``path``: a folder is ``voc`` (``Annotations/``, ``annotations/`` or
    XML files), ``yolo`` (``labels/`` or ``.txt`` labels) or ``labelme`` (JSON files); a file
    is ``yolo`` (.yaml), ``cvat`` (.xml), ``csv`` (.csv/.txt), or by its keys ``coco``,
    ``labelme`` or ``via`` (.json)."""
    p = Path(path)
    if p.is_dir():
        if (p / "Annotations").is_dir() or (p / "annotations").is_dir() or any(p.glob("*.xml")):
            return "voc"
        if (p / "labels").is_dir() or any(p.rglob("*.txt")):
            return "yolo"
        if any(p.rglob("*.json")):
            return "labelme"
        raise DataError(f"{p}: a folder, but not VOC (Annotations/), YOLO (labels/) or LabelMe (*.json)")
    if not p.is_file():
        raise DataError(f"{p}: annotation file not found")
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yolo"
    if suffix == ".xml":
        return "cvat"
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix == ".json":
        with open(p, "rb") as f:
            head = f.read(1 << 16).decode("utf-8", errors="replace")  # the reader names a file that is not UTF-8
        if '"annotations"' in head or '"images"' in head or '"categories"' in head:
            return "coco"
        return "labelme" if '"shapes"' in head and '"imagePath"' in head else "via"
    raise DataError(f"{p}: unknown annotation format (set data.format to one of: {', '.join(sorted(DATASET_FORMATS))})")


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
