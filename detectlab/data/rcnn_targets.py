"""Faster R-CNN targets (vectorised numpy): RPN anchor labels on the loader side, ROI
sampling in the training loop. Thresholds and counts follow keras-frcnn.

Regression targets are coded by the family's :class:`~detectlab.box_coding.DeltaCoder`
(keras-frcnn's ``(tx, ty, tw, th)`` times 4 for the RPN, times ``(8, 8, 4, 4)`` for the
classifier), the same coder the in-graph decoders use.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        """Batch -> ``(images, {"rpn_class", "rpn_regress", "gt_boxes", "gt_class_ids"})``;
        ``gt_boxes (B, M, 4)`` are normalised y1 x1 y2 x2 (crowd excluded), ``gt_class_ids``
        ``(B, M)`` with -1 padding."""
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
        y = {"rpn_class": np.stack(classes), "rpn_regress": np.stack(regresses), "gt_boxes": gt_boxes, "gt_class_ids": gt_ids}
        return np.stack([s.image for s in samples]), y


@dataclass
class RoiBatch:
    """Classifier inputs/targets for a batch: ``rois (B, R, 4)`` normalised y1 x1 y2 x2,
    ``classes (B, R, C+1)`` one-hot with background last (all zero = padding row),
    ``regress (B, R, 8C)`` = ``[class mask x4 | coded targets]``."""

    rois: np.ndarray
    classes: np.ndarray
    regress: np.ndarray
    positives: int
    negatives: int
    unusable_images: int  # images that gave no ROI with IoU >= bg_low (rows all padding)


class RoiSampler:
    """keras-frcnn's ``calc_iou`` + sampling: ROIs with best IoU < ``bg_low`` are dropped,
    ``[bg_low, fg)`` are background, ``>= fg`` foreground; ``num_rois`` per image, at most
    half foreground (random), the rest background (with replacement when too few)."""

    def __init__(self, num_classes: int, coder: DeltaCoder, num_rois: int = 32, fg_iou: float = 0.5,
                 bg_low: float = 0.1, add_gt: bool = True):
        self.num_classes, self.num_rois = int(num_classes), int(num_rois)
        self.fg_iou, self.bg_low, self.add_gt = fg_iou, bg_low, add_gt
        self.coder = DeltaCoder.from_config(coder)

    def sample(self, proposals, counts, gt_boxes, gt_class_ids, rng: np.random.Generator) -> RoiBatch:
        b, r, c = len(proposals), self.num_rois, self.num_classes
        rois = np.zeros((b, r, 4), np.float32)
        classes = np.zeros((b, r, c + 1), np.float32)
        regress = np.zeros((b, r, 8 * c), np.float32)
        totals = [0, 0, 0]
        for i in range(b):
            picked = self._sample_image(proposals[i, : counts[i]], gt_boxes[i], gt_class_ids[i], rng)
            if picked is None:
                totals[2] += 1
                continue
            boxes, labels, deltas, fg = picked
            n = len(boxes)
            rois[i, :n] = boxes
            classes[i, np.arange(n), labels] = 1.0
            cols = (4 * labels[fg])[:, None] + np.arange(4)
            rows = np.nonzero(fg)[0][:, None]
            regress[i, rows, cols] = 1.0
            regress[i, rows, 4 * c + cols] = deltas[fg]
            totals[0] += int(fg.sum())
            totals[1] += int(n - fg.sum())
        return RoiBatch(rois, classes, regress, *totals)

    def _sample_image(self, proposals, gt_boxes, gt_class_ids, rng):
        real = gt_class_ids >= 0
        gt, gt_cls = gt_boxes[real], gt_class_ids[real]
        candidates = np.concatenate([proposals, gt]) if self.add_gt and len(gt) else proposals
        if not len(gt) or not len(candidates):
            return None
        iou = iou_matrix(candidates, gt)
        best = iou.argmax(1)
        best_iou = iou[np.arange(len(candidates)), best]
        fg_idx = np.nonzero(best_iou >= self.fg_iou)[0]
        bg_idx = np.nonzero((best_iou >= self.bg_low) & (best_iou < self.fg_iou))[0]
        if not len(fg_idx) and not len(bg_idx):
            return None
        n_fg = min(len(fg_idx), self.num_rois // 2)
        fg_pick = rng.choice(fg_idx, n_fg, replace=False) if n_fg else fg_idx[:0]
        rest = self.num_rois - n_fg
        pool = bg_idx if len(bg_idx) else fg_idx
        bg_pick = rng.choice(pool, rest, replace=len(pool) < rest)
        picked = np.concatenate([fg_pick, bg_pick])
        fg = np.zeros(len(picked), bool)
        fg[:n_fg] = True
        fg[n_fg:] = best_iou[bg_pick] >= self.fg_iou  # only when background ran out
        labels = np.where(fg, gt_cls[best[picked]], self.num_classes)
        deltas = self.coder.encode(candidates[picked], gt[best[picked]])
        return candidates[picked], labels, deltas, fg
