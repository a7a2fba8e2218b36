"""YOLOv3 training targets, encoded on the loader side (vectorised numpy).

Per output scale ``l`` (stride ``32 / 2**l``; grid ``g = size / stride``) the target is
``(g, g, A, 6) float32``: ``cx, cy, w, h`` normalised by the input size, objectness (1/0)
and the class index. Each ground-truth box goes to the single anchor (of all scales) whose
shape IoU with it is best, at cell ``floor(centre * g)`` clipped into the grid (a box
centred on the last row/column stays in the last cell). Later boxes overwrite earlier
ones in the same slot, as in the reference.

With ``match_ratio`` ``r`` (YOLOv5's ``anchor_t``, 4), a box also goes to every other anchor
whose width and height are both within ``r`` times its own, at that anchor's scale: more
positives per box. Those extra assignments never overwrite a box's best anchor.
"""

from __future__ import annotations

import numpy as np

from detectlab.boxes import shape_iou


class YoloTargetEncoder:
    """Turns :class:`~detectlab.data.transforms.Sample` batches into model inputs/targets."""

    def __init__(self, anchors, anchor_masks, num_classes: int, image_size: int, max_boxes: int = 100,
                 match_ratio: float | None = None):
        self.anchors = np.asarray(anchors, np.float32).reshape(-1, 2)  # (A_total, 2) w, h in pixels
        self.anchor_masks = [list(m) for m in anchor_masks]
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.max_boxes = int(max_boxes)
        self.match_ratio = None if match_ratio is None else float(match_ratio)
        if self.image_size % 32:
            raise ValueError(f"YOLO image_size must be a multiple of 32, got {self.image_size}")
        self.grids = [self.image_size // (32 // 2**level) for level in range(len(self.anchor_masks))]
        self.layer_of_anchor = np.full(len(self.anchors), -1)
        self.slot_of_anchor = np.full(len(self.anchors), -1)
        for level, mask in enumerate(self.anchor_masks):
            self.layer_of_anchor[mask] = level
            self.slot_of_anchor[mask] = np.arange(len(mask))

    def encode(self, boxes: np.ndarray, class_ids: np.ndarray) -> list[np.ndarray]:
        """``boxes (N, 4)`` y1 x1 y2 x2 pixels of the ``size x size`` input -> per-scale targets."""
        size = float(self.image_size)
        targets = [np.zeros((g, g, len(m), 6), np.float32) for g, m in zip(self.grids, self.anchor_masks)]
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        wh = np.stack([boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], 1)
        valid = (wh > 0).all(1)
        boxes, wh, class_ids = boxes[valid], wh[valid], np.asarray(class_ids)[valid]
        if not len(boxes):
            return targets
        centre = np.stack([boxes[:, 1] + boxes[:, 3], boxes[:, 0] + boxes[:, 2]], 1) / (2 * size)
        best = shape_iou(wh, self.anchors).argmax(1)
        values = np.concatenate(
            [centre, wh / size, np.ones((len(boxes), 1), np.float32), class_ids[:, None].astype(np.float32)], 1
        )
        box_index, anchor = np.arange(len(boxes)), best
        if self.match_ratio is not None:
            ratio = wh[:, None, :] / self.anchors[None]
            near = np.maximum(ratio, 1.0 / ratio).max(2) < self.match_ratio  # (N, A_total)
            near[box_index, best] = False
            near &= self.layer_of_anchor[None] >= 0  # anchors some scale uses
            extra_box, extra_anchor = np.nonzero(near)
            box_index = np.concatenate([extra_box, box_index])  # best anchors written last: never overwritten
            anchor = np.concatenate([extra_anchor, best])
        layers = self.layer_of_anchor[anchor]
        for level, grid in enumerate(self.grids):
            pick = layers == level
            if not pick.any():
                continue
            cells = np.clip(np.floor(centre[box_index[pick]] * grid).astype(np.int64), 0, grid - 1)
            targets[level][cells[:, 1], cells[:, 0], self.slot_of_anchor[anchor[pick]]] = values[box_index[pick]]
        return targets

    def gt_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """``(max_boxes, 4)`` normalised ``cx, cy, w, h`` (zero-padded) for the ignore mask."""
        out = np.zeros((self.max_boxes, 4), np.float32)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)[: self.max_boxes]
        size = float(self.image_size)
        out[: len(boxes)] = np.stack(
            [
                (boxes[:, 1] + boxes[:, 3]) / (2 * size),
                (boxes[:, 0] + boxes[:, 2]) / (2 * size),
                (boxes[:, 3] - boxes[:, 1]) / size,
                (boxes[:, 2] - boxes[:, 0]) / size,
            ],
            1,
        )
        return out

    def __call__(self, samples: list) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Batch of samples -> ``(images uint8 (B, S, S, 3), {"targets_l": ..., "gt_boxes": ...})``."""
        per_sample = []
        for s in samples:
            keep = ~s.iscrowd
            per_sample.append((self.encode(s.boxes[keep], s.class_ids[keep]), self.gt_boxes(s.boxes[keep])))
        y = {f"targets_{level}": np.stack([t[level] for t, _ in per_sample]) for level in range(len(self.grids))}
        y["gt_boxes"] = np.stack([g for _, g in per_sample])
        return np.stack([s.image for s in samples]), y
