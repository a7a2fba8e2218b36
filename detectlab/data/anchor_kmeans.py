"""k-means anchor boxes (distance 1 - IoU of boxes sharing a centre), as in YOLOv2/v3, and
how well a set of anchors fits a dataset (best possible recall, as Ultralytics' AutoAnchor)."""

from __future__ import annotations

import numpy as np

from detectlab.boxes import shape_iou
from detectlab.data.records import DetectionDataset
from detectlab.errors import DataError

# AutoAnchor's rule: a box is within reach of an anchor when neither its width nor its height
# differs from the anchor's by more than this factor; anchors are fine when at least
# BPR_THRESHOLD of the training boxes are within reach of one.
ANCHOR_RATIO_LIMIT = 4.0
BPR_THRESHOLD = 0.98


def box_sizes(dataset: DetectionDataset, image_size: int) -> np.ndarray:
    """``(N, 2)`` w, h of every non-crowd box after letterboxing to ``image_size``."""
    sizes = []
    for r in dataset.records:
        scale = image_size / max(r.width, r.height)
        b = r.boxes[~r.iscrowd]
        sizes.append(np.stack([b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], 1) * scale)
    sizes = np.concatenate(sizes) if sizes else np.zeros((0, 2), np.float32)
    return sizes[(sizes > 0).all(1)]


def kmeans_anchors(sizes: np.ndarray, k: int, seed: int = 0, iterations: int = 300) -> np.ndarray:
    """``k`` anchors ``(k, 2)`` sorted by area; raises if there are fewer boxes than ``k``."""
    if len(sizes) < k:
        raise DataError(f"need at least {k} boxes for {k} anchors, got {len(sizes)}")
    rng = np.random.default_rng(seed)
    centres = sizes[rng.choice(len(sizes), k, replace=False)].astype(np.float64)
    assignment = None
    for _ in range(iterations):
        new = shape_iou(sizes, centres).argmax(1)
        if assignment is not None and (new == assignment).all():
            break
        assignment = new
        for j in range(k):
            members = sizes[assignment == j]
            if len(members):
                centres[j] = np.median(members, axis=0)
    return centres[np.argsort(centres.prod(1))]


def mean_best_iou(sizes: np.ndarray, anchors: np.ndarray) -> float:
    return float(shape_iou(sizes, anchors).max(1).mean())


def best_possible_recall(sizes: np.ndarray, anchors: np.ndarray, ratio_limit: float = ANCHOR_RATIO_LIMIT) -> float:
    """The share of boxes ``sizes (N, 2)`` w, h whose width and height are both within
    ``ratio_limit`` times those of some anchor ``(K, 2)`` (1.0 for no boxes)."""
    if not len(sizes):
        return 1.0
    ratio = np.asarray(sizes, np.float64)[:, None, :] / np.asarray(anchors, np.float64)[None]
    fit = np.minimum(ratio, 1.0 / ratio).min(2).max(1)  # (N,) the best anchor's worse side
    return float((fit > 1.0 / ratio_limit).mean())
