"""Faster R-CNN's RPN targets on the loader side (vectorised numpy); the classifier's ROIs are
sampled in-graph (:mod:`detectlab.layers.roi_sampling`). Thresholds and counts follow keras-frcnn.

Regression targets are coded by the family's :class:`~detectlab.box_coding.DeltaCoder`
(keras-frcnn's ``(tx, ty, tw, th)`` times 4 for the RPN, times ``(8, 8, 4, 4)`` for the
classifier), the same coder the in-graph decoders use.
"""

from __future__ import annotations

import numpy as np

from detectlab.anchor_grid import grid_anchors
from detectlab.box_coding import DeltaCoder
from detectlab.boxes import iou_matrix


def label_anchors(anchors: np.ndarray, gt: np.ndarray, crowd: np.ndarray, positive_iou: float, negative_iou: float,
                  samples: int, rng: np.random.Generator):
    """RPN anchor labels shared by the R-CNN families (keras-frcnn ``calc_rpn`` / matterport
    ``build_rpn_targets``), vectorised.

    - positive: IoU > ``positive_iou`` with a ground truth, plus each ground truth's best
      anchor(s) (ties: every anchor at the maximum) if it overlaps at all;
    - negative: best IoU < ``negative_iou`` and no overlap (IoU >= 0.001) with a crowd box;
    - at most ``samples`` labelled, at most half positive (random subsets).

    Returns ``(positive indices, negative indices, matched gt boxes (P, 4))`` into ``anchors``.
    """
    if len(gt):
        iou = iou_matrix(anchors, gt)  # (N, G)
        best_gt = iou.argmax(1)
        best_iou = iou[np.arange(len(anchors)), best_gt]
        pos = best_iou > positive_iou
        neg = best_iou < negative_iou
        gt_best = iou.max(0)
        forced_rows, forced_cols = np.nonzero((iou == gt_best[None]) & (gt_best[None] > 0))
        pos[forced_rows] = True
        best_gt[forced_rows] = forced_cols
        neg &= ~pos
    else:
        best_gt = np.zeros(len(anchors), np.int64)
        pos = np.zeros(len(anchors), bool)
        neg = np.ones(len(anchors), bool)
    if len(crowd):
        neg &= iou_matrix(anchors, crowd).max(1) < 0.001
    pos_idx, neg_idx = np.nonzero(pos)[0], np.nonzero(neg)[0]
    if len(pos_idx) > samples // 2:
        pos_idx = np.sort(rng.choice(pos_idx, samples // 2, replace=False))
    if len(neg_idx) > samples - len(pos_idx):
        neg_idx = np.sort(rng.choice(neg_idx, samples - len(pos_idx), replace=False))
    matched = gt[best_gt[pos_idx]] if len(gt) else np.zeros((0, 4), np.float32)
    return pos_idx, neg_idx, matched


def sample_seeds(samples: list) -> np.ndarray:
    """``(B,)`` int64: each sample's seed (0 for a sample loaded without one), the seed of the
    random choices made in-graph for that image, whichever replica processes it."""
    return np.array([s.seed or 0 for s in samples], np.int64)


class RpnTargetEncoder:
    """Faster R-CNN anchor labels and regression targets for one image (keras-frcnn
    ``calc_rpn``): anchors crossing the image border are ignored, the rest are labelled by
    :func:`label_anchors`.

    Output per image: ``class (H, W, 2A)`` = ``[valid mask | positive mask]`` and
    ``regress (H, W, 8A)`` = ``[positive mask x4 | coded targets]`` (``coder``).
    """

    def __init__(self, image_size: int, stride: int, scales, ratios, coder: DeltaCoder, positive_iou=0.7,
                 negative_iou=0.3, samples: int = 256, max_boxes: int = 100):
        self.image_size = int(image_size)
        self.feature_hw = (self.image_size // stride, self.image_size // stride)
        self.anchors = grid_anchors(self.feature_hw, stride, scales, ratios)  # (N, 4) pixels
        self.num_anchors = len(scales) * len(ratios)
        self.inside = ((self.anchors[:, :2] >= 0) & (self.anchors[:, 2:] <= self.image_size)).all(1)
        self.positive_iou, self.negative_iou = positive_iou, negative_iou
        self.samples, self.coder, self.max_boxes = int(samples), DeltaCoder.from_config(coder), int(max_boxes)

    def encode(self, boxes: np.ndarray, iscrowd: np.ndarray, rng: np.random.Generator):
        n = len(self.anchors)
        inside = np.nonzero(self.inside)[0]
        pos, neg, matched = label_anchors(self.anchors[inside], boxes[~iscrowd], boxes[iscrowd], self.positive_iou,
                                          self.negative_iou, self.samples, rng)
        pos, neg = inside[pos], inside[neg]
        valid = np.zeros(n, bool)
        positive = np.zeros(n, bool)
        valid[pos] = valid[neg] = True
        positive[pos] = True
        targets = np.zeros((n, 4), np.float32)  # zero except at positive anchors
        targets[pos] = self.coder.encode(self.anchors[pos], matched)
        h, w = self.feature_hw
        a = self.num_anchors
        cls = np.concatenate([valid.reshape(h, w, a), positive.reshape(h, w, a)], -1).astype(np.float32)
        regress = np.concatenate([np.repeat(positive.reshape(h, w, a), 4, axis=-1), targets.reshape(h, w, 4 * a)], -1)
        return cls, regress.astype(np.float32)

    def __call__(self, samples: list):
        """Batch -> ``(images, {"rpn_class", "rpn_regress", "gt_boxes", "gt_class_ids", "sample_seeds"})``;
        ``gt_boxes (B, M, 4)`` are normalised y1 x1 y2 x2 (crowd excluded), ``gt_class_ids``
        ``(B, M)`` with -1 padding, ``sample_seeds (B,)`` int64 each image's seed (the in-graph
        ROI sampler draws from it)."""
        classes, regresses = [], []
        gt_boxes = np.zeros((len(samples), self.max_boxes, 4), np.float32)
        gt_ids = np.full((len(samples), self.max_boxes), -1, np.int32)
        for k, s in enumerate(samples):
            cls, reg = self.encode(s.boxes, s.iscrowd, np.random.default_rng(s.seed))
            classes.append(cls)
            regresses.append(reg)
            keep = ~s.iscrowd
            count = min(int(keep.sum()), self.max_boxes)
            gt_boxes[k, :count] = s.boxes[keep][:count] / self.image_size
            gt_ids[k, :count] = s.class_ids[keep][:count]
        y = {"rpn_class": np.stack(classes), "rpn_regress": np.stack(regresses), "gt_boxes": gt_boxes, "gt_class_ids": gt_ids,
             "sample_seeds": sample_seeds(samples)}
        return np.stack([s.image for s in samples]), y
