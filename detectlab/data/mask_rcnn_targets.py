"""Mask R-CNN inputs, encoded on the loader side (vectorised numpy; matterport's
``build_rpn_targets`` + ``load_image_gt`` with mini masks).

Per image:

- ``rpn_match (N,) int32``: 1 positive, -1 negative, 0 neutral, over the FPN anchors of
  :func:`detectlab.anchor_pyramid.pyramid_anchors` (every anchor, border ones included, as the
  reference); labels by :func:`detectlab.data.rcnn_targets.label_anchors`;
- ``rpn_bbox (N, 4) float32``: the RPN coder's deltas for positive anchors, else 0
  (dense, where the reference packed the positives first);
- ``gt_class_ids (M,) int32``: ``1..C`` (0 = padding, ``-class`` = crowd), ``gt_boxes
  (M, 4)`` normalised ``y1, x1, y2, x2``, ``gt_masks (M, S, S) uint8`` "mini masks": each
  instance's mask cropped to its box and resized to ``S x S`` (56); Faster R-CNN FPN
  (``mini_mask=None``) takes no masks;
- ``sample_seeds () int64``: the image's seed, from which the model's in-graph ROI sampling
  draws (:func:`detectlab.data.rcnn_targets.sample_seeds`).
"""

from __future__ import annotations

import cv2
import numpy as np

from detectlab.anchor_pyramid import pyramid_anchors
from detectlab.box_coding import DeltaCoder
from detectlab.data.rcnn_targets import label_anchors, sample_seeds

def mini_masks(masks: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """``masks (N, H, W)`` 0/1, ``boxes (N, 4)`` pixels -> ``(N, size, size) uint8``: each mask
    inside its box, resized bilinearly and thresholded at 0.5."""
    out = np.zeros((len(boxes), size, size), np.uint8)
    h, w = masks.shape[1:] if len(masks) else (0, 0)
    for k, (y1, x1, y2, x2) in enumerate(np.asarray(boxes)):
        top, left = int(np.clip(np.floor(y1), 0, h - 1)), int(np.clip(np.floor(x1), 0, w - 1))
        bottom, right = int(np.clip(np.ceil(y2), top + 1, h)), int(np.clip(np.ceil(x2), left + 1, w))
        crop = masks[k, top:bottom, left:right].astype(np.float32)
        out[k] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR) >= 0.5
    return out


class MaskRcnnTargetEncoder:
    """``[Sample] -> ((inputs dict,))``: everything the training graph takes as input."""

    def __init__(self, image_size: int, strides, scales, ratios, coder: DeltaCoder, anchor_stride: int = 1,
                 positive_iou: float = 0.7, negative_iou: float = 0.3, samples: int = 256, mini_mask: int | None = 56,
                 max_boxes: int = 100):
        self.image_size = int(image_size)
        self.anchors, _ = pyramid_anchors(self.image_size, strides, scales, ratios, anchor_stride)
        self.positive_iou, self.negative_iou, self.samples = positive_iou, negative_iou, int(samples)
        self.coder = DeltaCoder.from_config(coder)
        self.mini_mask = None if mini_mask is None else int(mini_mask)
        self.max_boxes = int(max_boxes)

    def encode_rpn(self, boxes: np.ndarray, iscrowd: np.ndarray, rng: np.random.Generator):
        pos, neg, matched = label_anchors(self.anchors, boxes[~iscrowd], boxes[iscrowd], self.positive_iou,
                                          self.negative_iou, self.samples, rng)
        match = np.zeros(len(self.anchors), np.int32)
        match[neg] = -1
        match[pos] = 1
        bbox = np.zeros((len(self.anchors), 4), np.float32)
        bbox[pos] = self.coder.encode(self.anchors[pos], matched)
        return match, bbox

    def __call__(self, samples: list):
        b, m, s = len(samples), self.max_boxes, self.mini_mask
        out = {
            "gt_class_ids": np.zeros((b, m), np.int32),
            "gt_boxes": np.zeros((b, m, 4), np.float32),
            "rpn_match": np.zeros((b, len(self.anchors)), np.int32),
            "rpn_bbox": np.zeros((b, len(self.anchors), 4), np.float32),
        }
        if s is not None:
            out["gt_masks"] = np.zeros((b, m, s, s), np.uint8)
        for i, sample in enumerate(samples):
            boxes, crowd = np.asarray(sample.boxes, np.float32).reshape(-1, 4), np.asarray(sample.iscrowd, bool)
            out["rpn_match"][i], out["rpn_bbox"][i] = self.encode_rpn(boxes, crowd, np.random.default_rng(sample.seed))
            n = min(len(boxes), m)
            ids = np.asarray(sample.class_ids[:n], np.int32) + 1
            out["gt_class_ids"][i, :n] = np.where(crowd[:n], -ids, ids)
            out["gt_boxes"][i, :n] = boxes[:n] / self.image_size
            if s is not None and sample.masks is not None and n:
                out["gt_masks"][i, :n] = mini_masks(sample.masks[:n], boxes[:n], s)
        out["images"] = np.stack([sample.image for sample in samples])
        out["sample_seeds"] = sample_seeds(samples)
        return (out,)
