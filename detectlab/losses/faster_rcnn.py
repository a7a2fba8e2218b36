"""Faster R-CNN losses (keras-frcnn definitions), registered by name, and
:class:`FasterRcnnCriterion`.

Each term reads a :class:`FasterRcnnTerms` and belongs to one of the two alternately trained
views: ``rpn`` (``rpn_loss_cls``, ``rpn_loss_regr``) or ``classifier`` (``class_loss_cls``,
``class_loss_regr``; ``loss.box: giou | diou | ciou`` replaces the latter by
``class_loss_giou`` ..., ``1 - GIoU`` of the boxes decoded from the predicted and target
deltas of the true class, averaged over foreground ROIs).
Shapes: ``A`` anchors per cell, ``R`` ROIs per image, ``C`` object classes (the classifier
has ``C + 1`` outputs, background last). Targets come from
:mod:`detectlab.data.rcnn_targets`. Fixed against the reference: binary cross-entropy takes
(labels, predictions) in the right order, and the classifier's class loss averages over
every image of the batch, not only the first. As in the reference, each smooth-L1 loss is
divided by ``sum(epsilon + mask)`` (epsilon added per element).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from detectlab.box_coding import DeltaCoder
from detectlab.layers.box_ops import iou_family
from detectlab.losses.criterion import Criterion
from detectlab.losses.registry import register_loss

EPSILON = 1e-4
FASTER_RCNN_LOSS_NAMES = ("rpn_loss_cls", "rpn_loss_regr", "class_loss_cls", "class_loss_regr")
FAMILY = "faster_rcnn"


class FasterRcnnTerms(NamedTuple):
    """What the terms read; a view's step fills its own fields (the others stay None)."""

    rpn_class: Any = None  # (B, H, W, 2A) [sampled | positive]
    rpn_regress: Any = None  # (B, H, W, 8A) [positive x4 | coded targets]
    rpn_scores: Any = None  # (B, H, W, A) probabilities
    rpn_deltas: Any = None  # (B, H, W, 4A)
    classes: Any = None  # (B, R, C+1) one-hot, background last; all-zero rows are padding
    regress: Any = None  # (B, R, 8C) [class mask x4 | coded targets]
    class_probs: Any = None  # (B, R, C+1) softmax
    class_deltas: Any = None  # (B, R, 4C)
    rois: Any = None  # (B, R, 4) y1 x1 y2 x2 normalised
    coder: DeltaCoder | None = None  # the classifier's coding (IoU terms decode with it)
    label_smoothing: float = 0.0


def smooth_l1(x):
    ax = tf.abs(x)
    return tf.where(ax <= 1.0, 0.5 * x * x, ax - 0.5)


@register_loss("rpn_loss_cls", FAMILY, group="rpn")
def rpn_loss_cls(t: FasterRcnnTerms):
    """Binary cross-entropy of the RPN scores over the sampled anchors."""
    y_true, y_pred = tf.cast(t.rpn_class, tf.float32), t.rpn_scores
    a = tf.shape(y_pred)[-1]
    valid, labels = y_true[..., :a], y_true[..., a:]
    p = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-7, 1 - 1e-7)
    bce = -(labels * tf.math.log(p) + (1 - labels) * tf.math.log(1 - p))
    return tf.reduce_sum(valid * bce) / tf.reduce_sum(EPSILON + valid)


@register_loss("rpn_loss_regr", FAMILY, group="rpn")
def rpn_loss_regr(t: FasterRcnnTerms):
    """Smooth L1 of the RPN deltas on positive anchors."""
    return _masked_smooth_l1(t.rpn_regress, t.rpn_deltas)


def _masked_smooth_l1(y_true, y_pred):
    """``y_true (..., 2n)`` = [mask | targets], ``y_pred (..., n)``: smooth L1 where the mask is
    1, divided by ``sum(EPSILON + mask)`` (keras-frcnn)."""
    n = tf.shape(y_pred)[-1]
    y_true = tf.cast(y_true, tf.float32)
    mask, target = y_true[..., :n], y_true[..., n:]
    return tf.reduce_sum(mask * smooth_l1(target - tf.cast(y_pred, tf.float32))) / tf.reduce_sum(EPSILON + mask)


@register_loss("class_loss_cls", FAMILY, group="classifier")
def class_loss_cls(t: FasterRcnnTerms):
    """Categorical cross-entropy of the classifier averaged over the real ROIs of the whole
    batch (label smoothing ``e``: targets ``(1 - e) y + e / (C + 1)`` on real rows)."""
    y_true = tf.cast(t.classes, tf.float32)
    p = tf.clip_by_value(tf.cast(t.class_probs, tf.float32), 1e-7, 1.0)
    rows = tf.reduce_sum(y_true, axis=-1)
    if t.label_smoothing:
        k = tf.cast(tf.shape(y_true)[-1], tf.float32)
        y_true = y_true * (1.0 - t.label_smoothing) + rows[..., None] * t.label_smoothing / k
    ce = -tf.reduce_sum(y_true * tf.math.log(p), axis=-1)
    return tf.reduce_sum(ce) / tf.maximum(tf.reduce_sum(rows), 1.0)


@register_loss("class_loss_regr", FAMILY, role="box", group="classifier")
def class_loss_regr(t: FasterRcnnTerms):
    """Smooth L1 on the true class's slot of foreground ROIs."""
    return _masked_smooth_l1(t.regress, t.class_deltas)


def _iou_loss(t: FasterRcnnTerms, kind: str):
    """``1 - IoU-family`` of the boxes decoded (from each ROI) from the predicted and the target
    deltas in the true class's slot, averaged over foreground ROIs."""
    pred = tf.cast(t.class_deltas, tf.float32)
    shape = tf.concat([tf.shape(pred)[:-1], [-1, 4]], 0)
    n = tf.shape(pred)[-1]
    regress = tf.cast(t.regress, tf.float32)
    mask = tf.reshape(regress[..., :n], shape)  # (B, R, C, 4): 1 in the true class's slot
    target = tf.reduce_sum(mask * tf.reshape(regress[..., n:], shape), axis=-2)
    pred = tf.reduce_sum(mask * tf.reshape(pred, shape), axis=-2)
    positive = tf.reduce_max(mask[..., 0], axis=-1)  # (B, R)
    rois = tf.cast(t.rois, tf.float32)
    value = iou_family(t.coder.decode(rois, pred), t.coder.decode(rois, target), kind)
    return tf.math.divide_no_nan(tf.reduce_sum(positive * (1.0 - value)), tf.reduce_sum(positive))


@register_loss("class_loss_giou", FAMILY, role="box", group="classifier")
def class_loss_giou(t: FasterRcnnTerms):
    return _iou_loss(t, "giou")


@register_loss("class_loss_diou", FAMILY, role="box", group="classifier")
def class_loss_diou(t: FasterRcnnTerms):
    return _iou_loss(t, "diou")


@register_loss("class_loss_ciou", FAMILY, role="box", group="classifier")
def class_loss_ciou(t: FasterRcnnTerms):
    return _iou_loss(t, "ciou")


def class_accuracy(y_true, y_pred):
    """Fraction of real ROIs whose arg-max class is right."""
    rows = tf.reduce_sum(y_true, axis=-1)
    right = tf.cast(tf.equal(tf.argmax(y_true, -1), tf.argmax(y_pred, -1)), tf.float32) * rows
    return tf.reduce_sum(right) / tf.maximum(tf.reduce_sum(rows), 1.0)


class FasterRcnnCriterion(Criterion):
    """The recipe's Faster R-CNN terms, per view (``group``: ``"rpn"`` or ``"classifier"``).

    ``x``, ``y``, ``outputs`` of a view's step: RPN ``images``, ``{rpn_class, rpn_regress}``,
    ``[scores, deltas]``; classifier ``[images, rois]``, ``{classes, regress}``,
    ``[probabilities, deltas]``. ``coder``: the classifier's :class:`DeltaCoder`.
    """

    FAMILY = FAMILY
    DEFAULT_TERMS = FASTER_RCNN_LOSS_NAMES
    BOX_TERMS = {"smooth_l1": ("class_loss_regr",), "giou": ("class_loss_giou",), "diou": ("class_loss_diou",),
                 "ciou": ("class_loss_ciou",)}

    def __init__(self, coder: DeltaCoder, terms=None, label_smoothing: float = 0.0):
        super().__init__(terms, label_smoothing)
        self.coder = coder

    def context(self, x, y, outputs, group=None) -> FasterRcnnTerms:
        if group == "rpn":
            return FasterRcnnTerms(rpn_class=y["rpn_class"], rpn_regress=y["rpn_regress"], rpn_scores=outputs[0],
                                   rpn_deltas=outputs[1])
        if group == "classifier":
            return FasterRcnnTerms(classes=y["classes"], regress=y["regress"], class_probs=outputs[0],
                                   class_deltas=outputs[1], rois=x[1], coder=self.coder,
                                   label_smoothing=self.label_smoothing)
        raise ValueError(f"Faster R-CNN trains in two views: group 'rpn' or 'classifier', got {group!r}")
