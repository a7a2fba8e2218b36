"""YOLOv3 losses: the registered terms and :class:`YoloCriterion`, which sums them over scales.

Each term takes a :class:`YoloScale` (one output scale, everything already aligned) and
returns the *sum* over that scale; the criterion adds the scales and divides by the batch
size, as the reference does. The reference terms are ``yolo_xy_loss``, ``yolo_wh_loss``,
``yolo_confidence_loss`` and ``yolo_class_loss``; ``loss.box: giou | diou | ciou`` replaces
the first two by one IoU-family term (``1 - GIoU`` ... summed over the assigned cells, as
YOLOv4/v5 do). Shapes below: ``B`` batch, ``g`` grid, ``A`` anchors of the scale, ``C``
classes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from detectlab.box_coding import YoloGridCoder
from detectlab.layers.box_ops import centre_iou, centre_to_corners, iou_family
from detectlab.losses.criterion import Criterion
from detectlab.losses.registry import register_loss

YOLO_LOSS_NAMES = ("yolo_xy_loss", "yolo_wh_loss", "yolo_confidence_loss", "yolo_class_loss")
FAMILY = "yolov3"


class YoloScale(NamedTuple):
    """One output scale, prepared for the loss terms (all float32)."""

    raw_xy: tf.Tensor  # (B, g, g, A, 2) raw network output: centre offset logits
    raw_wh: tf.Tensor  # (B, g, g, A, 2) log size relative to the anchor
    raw_conf: tf.Tensor  # (B, g, g, A, 1) objectness logit
    raw_class: tf.Tensor  # (B, g, g, A, C) class logits
    object_mask: tf.Tensor  # (B, g, g, A, 1) 1 where a ground truth is assigned
    true_xy: tf.Tensor  # (B, g, g, A, 2) centre offset inside its cell, in [0, 1]
    true_wh: tf.Tensor  # (B, g, g, A, 2) log(wh / anchor), 0 where no object
    box_loss_scale: tf.Tensor  # (B, g, g, A, 1) 2 - w * h (w, h relative to the input)
    true_class: tf.Tensor  # (B, g, g, A, C) one-hot (label-smoothed: 1 - e/2 and e/2)
    ignore_mask: tf.Tensor  # (B, g, g, A, 1) 1 where the best IoU with any GT < ignore_thresh
    class_weights: tf.Tensor  # (C,) per-class weight of the class term
    pred_box: tf.Tensor  # (B, g, g, A, 4) decoded prediction, y1 x1 y2 x2 normalised to the input
    true_box: tf.Tensor  # (B, g, g, A, 4) assigned ground truth, y1 x1 y2 x2 (zeros where none)


def _bce(labels, logits):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


@register_loss("yolo_xy_loss", FAMILY, role="box")
def yolo_xy_loss(s: YoloScale) -> tf.Tensor:
    """``obj * box_loss_scale * BCE(true xy offset, raw xy)``."""
    return tf.reduce_sum(s.object_mask * s.box_loss_scale * _bce(s.true_xy, s.raw_xy))


@register_loss("yolo_wh_loss", FAMILY, role="box")
def yolo_wh_loss(s: YoloScale) -> tf.Tensor:
    """``obj * box_loss_scale * 0.5 * (log(true wh / anchor) - raw wh)^2``."""
    return tf.reduce_sum(s.object_mask * s.box_loss_scale * 0.5 * tf.square(s.true_wh - s.raw_wh))


@register_loss("yolo_confidence_loss", FAMILY)
def yolo_confidence_loss(s: YoloScale) -> tf.Tensor:
    """``obj * BCE + (1 - obj) * BCE * ignore_mask`` on the objectness logit."""
    bce = _bce(s.object_mask, s.raw_conf)
    return tf.reduce_sum(s.object_mask * bce + (1.0 - s.object_mask) * bce * s.ignore_mask)


@register_loss("yolo_class_loss", FAMILY)
def yolo_class_loss(s: YoloScale) -> tf.Tensor:
    """``obj * BCE(one-hot class, raw class logits)``, each class weighted."""
    return tf.reduce_sum(s.object_mask * _bce(s.true_class, s.raw_class) * s.class_weights)


def _iou_loss(s: YoloScale, kind: str) -> tf.Tensor:
    return tf.reduce_sum(s.object_mask[..., 0] * (1.0 - iou_family(s.pred_box, s.true_box, kind)))


@register_loss("yolo_giou_loss", FAMILY, role="box")
def yolo_giou_loss(s: YoloScale) -> tf.Tensor:
    """``obj * (1 - GIoU(predicted box, assigned ground truth))``."""
    return _iou_loss(s, "giou")


@register_loss("yolo_diou_loss", FAMILY, role="box")
def yolo_diou_loss(s: YoloScale) -> tf.Tensor:
    """``obj * (1 - DIoU(predicted box, assigned ground truth))``."""
    return _iou_loss(s, "diou")


@register_loss("yolo_ciou_loss", FAMILY, role="box")
def yolo_ciou_loss(s: YoloScale) -> tf.Tensor:
    """``obj * (1 - CIoU(predicted box, assigned ground truth))``."""
    return _iou_loss(s, "ciou")


class YoloCriterion(Criterion):
    """Computes the recipe's YOLO terms over all scales.

    ``anchors``: ``(A_total, 2)`` w, h in input pixels; ``anchor_masks[l]``: the anchors of
    output ``l`` (``l = 0`` is stride 32). Targets come from
    :class:`~detectlab.data.yolo_targets.YoloTargetEncoder`. ``label_smoothing`` ``e``: class
    targets ``1 - e/2`` and ``e/2`` (YOLOv5's smoothing of a sigmoid BCE).
    """

    FAMILY = FAMILY
    DEFAULT_TERMS = YOLO_LOSS_NAMES
    BOX_TERMS = {"xywh": ("yolo_xy_loss", "yolo_wh_loss"), "giou": ("yolo_giou_loss",),
                 "diou": ("yolo_diou_loss",), "ciou": ("yolo_ciou_loss",)}

    def __init__(self, anchors, anchor_masks, num_classes: int, ignore_thresh: float = 0.5, class_weights=None,
                 terms=None, label_smoothing: float = 0.0):
        super().__init__(terms, label_smoothing)
        self.anchors = np.asarray(anchors, np.float32).reshape(-1, 2)
        self.anchor_masks = [list(m) for m in anchor_masks]
        self.num_classes = int(num_classes)
        self.ignore_thresh = float(ignore_thresh)
        weights = np.ones(self.num_classes, np.float32) if class_weights is None else np.asarray(class_weights, np.float32)
        if weights.shape != (self.num_classes,):
            raise ValueError(f"class_weights needs {self.num_classes} values, got {weights.shape}")
        self.class_weights = weights
        self.coder = YoloGridCoder()

    def __call__(self, x, y, outputs, group=None) -> dict[str, tf.Tensor]:
        """``y``: the encoder's ``targets_<l>`` and ``gt_boxes``; ``outputs``: the raw scales."""
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        batch = tf.cast(tf.shape(outputs[0])[0], tf.float32)
        gt_boxes = _used_slots(tf.cast(y["gt_boxes"], tf.float32))
        totals = {name: tf.zeros(()) for name in self.names}
        for level, raw in enumerate(outputs):
            scale = self.prepare(level, raw, y[f"targets_{level}"], gt_boxes)
            for name, term in self.terms.items():
                totals[name] += term(scale)
        return {name: value / batch for name, value in totals.items()}

    def prepare(self, level: int, raw, target, gt_boxes) -> YoloScale:
        """Align one scale's raw output ``(B, g, g, A*(5+C))`` with its targets."""
        anchors = tf.constant(self.anchors[self.anchor_masks[level]])  # (A, 2)
        num_anchors = len(self.anchor_masks[level])
        raw = tf.cast(raw, tf.float32)
        shape = tf.shape(raw)
        raw = tf.reshape(raw, [shape[0], shape[1], shape[2], num_anchors, 5 + self.num_classes])
        target = tf.cast(target, tf.float32)
        object_mask = target[..., 4:5]
        true_xy, true_wh = self.coder.encode(target[..., 0:4], anchors, level, object_mask)
        box_loss_scale = 2.0 - target[..., 2:3] * target[..., 3:4]
        smoothing = self.label_smoothing
        true_class = tf.one_hot(tf.cast(target[..., 5], tf.int32), self.num_classes, 1.0 - smoothing / 2, smoothing / 2)

        # one split: its gradient is one concat, where slices would each need a full-size pad
        raw_xy, raw_wh, raw_conf, raw_class = tf.split(raw, [2, 2, 1, self.num_classes], axis=-1)
        pred = self.coder.decode(raw_xy, raw_wh, anchors, level)  # (B, g, g, A, 4) cx cy w h
        gt = tf.cast(gt_boxes, tf.float32)[:, None, None, None, :, :]  # (B, 1, 1, 1, M, 4)
        best_iou = tf.reduce_max(centre_iou(pred[..., None, :], gt), axis=-1, keepdims=True)
        ignore_mask = tf.stop_gradient(tf.cast(best_iou < self.ignore_thresh, tf.float32))
        return YoloScale(
            raw_xy=raw_xy,
            raw_wh=raw_wh,
            raw_conf=raw_conf,
            raw_class=raw_class,
            object_mask=object_mask,
            true_xy=true_xy,
            true_wh=true_wh,
            box_loss_scale=box_loss_scale,
            true_class=true_class,
            ignore_mask=ignore_mask,
            class_weights=tf.constant(self.class_weights),
            pred_box=centre_to_corners(pred),
            true_box=centre_to_corners(target[..., 0:4]),
        )


def _used_slots(gt_boxes):
    """Drop the padding columns no image of the batch uses (boxes are front-packed)."""
    used = tf.reduce_any(gt_boxes[..., 2] * gt_boxes[..., 3] > 0, axis=0)  # (M,)
    count = tf.reduce_max(tf.where(used, tf.range(1, tf.shape(used)[0] + 1), 0))
    return gt_boxes[:, : tf.maximum(count, 1)]
