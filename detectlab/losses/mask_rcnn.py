"""Mask R-CNN losses (matterport definitions), registered by name, and :class:`MaskRcnnCriterion`.

Each term reads a :class:`MaskRcnnTerms`. ``loss.box: giou | diou | ciou`` replaces the box
head's smooth-L1 ``mrcnn_bbox_loss`` by ``mrcnn_giou_loss`` ... (``1 - GIoU`` of the boxes
decoded from each ROI with the predicted and the target deltas, averaged over positive ROIs).

Shapes: ``N`` anchors, ``T`` ROIs per image, ``C`` object classes (heads have ``C + 1``
outputs, background at index 0). Targets come from the RPN target encoder (anchors of
:func:`detectlab.anchor_pyramid.pyramid_anchors`) and from
:class:`detectlab.layers.detection_targets.DetectionTargets`. Deltas are
``(dy, dx, dh, dw) / std``. Every loss computes in float32 whatever the input dtypes and
returns 0 (not NaN) when no element qualifies. Smooth-L1 uses beta 1.

Difference from matterport: the RPN box targets are dense ``(B, N, 4)`` (one row per
anchor, read where ``rpn_match == 1``) instead of matterport's packed
``(B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4)`` list of the positives' targets; the value is the same.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from detectlab.box_coding import DeltaCoder
from detectlab.errors import ConfigError
from detectlab.layers.box_ops import iou_family
from detectlab.losses.criterion import Criterion
from detectlab.losses.faster_rcnn import smooth_l1
from detectlab.losses.registry import register_loss
from detectlab.losses.replicas import replica_mean

MASK_RCNN_LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")
BCE_EPSILON = 1e-7  # Keras' backend epsilon, as matterport's K.binary_crossentropy
FAMILY = "mask_rcnn"


class MaskRcnnTerms(NamedTuple):
    """What the terms read (the loader's targets and the training graph's outputs)."""

    rpn_match: Any = None  # (B, N) 1 positive / -1 negative / 0 neutral (matterport's (B, N, 1) too)
    rpn_bbox_target: Any = None  # (B, N, 4) dense; only rows of positive anchors are read
    rpn_logits: Any = None  # (B, N, 2) background, foreground
    rpn_bbox: Any = None  # (B, N, 4)
    target_class_ids: Any = None  # (B, T) of the sampled ROIs (0: background)
    target_deltas: Any = None  # (B, T, 4)
    class_logits: Any = None  # (B, T, C+1)
    pred_deltas: Any = None  # (B, T, C+1, 4)
    rois: Any = None  # (B, T, 4) y1 x1 y2 x2 normalised (the IoU terms decode from them)
    active_class_ids: Any = None  # (B, C+1) 1 where the class belongs to the image's dataset
    mask_class_ids: Any = None  # (B, P) class ids of the ROIs the mask head saw
    target_masks: Any = None  # (B, P, H, W) 0/1
    pred_masks: Any = None  # (B, P, H, W, C+1) sigmoid probabilities
    coder: DeltaCoder | None = None  # the box head's coding
    label_smoothing: float = 0.0


def _masked_mean(values, mask):
    """Mean of ``values`` where ``mask`` (same shape) is true; 0 when nothing is. Under
    ``tf.distribute`` the count is the replicas' mean (:mod:`detectlab.losses.replicas`)."""
    mask = tf.cast(mask, tf.float32)
    total = tf.reduce_sum(tf.where(mask > 0, values, 0.0) * mask)
    return tf.math.divide_no_nan(total, replica_mean(tf.reduce_sum(mask)))


def _match(rpn_match, like):
    """``rpn_match`` as int32 with the shape of ``like`` (accepts matterport's trailing ``1``)."""
    return tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(like))


@register_loss("rpn_class_loss", FAMILY)
def rpn_class_loss(t: MaskRcnnTerms):
    """Softmax cross-entropy of the RPN logits averaged over non-neutral anchors."""
    logits = tf.cast(t.rpn_logits, tf.float32)
    match = _match(t.rpn_match, logits[..., 0])
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(match == 1, tf.int32), logits=logits)
    return _masked_mean(ce, match != 0)


@register_loss("rpn_bbox_loss", FAMILY)
def rpn_bbox_loss(t: MaskRcnnTerms):
    """Smooth-L1 of the RPN deltas averaged over the positives' coordinates."""
    pred = tf.cast(t.rpn_bbox, tf.float32)
    match = _match(t.rpn_match, pred[..., 0])
    loss = smooth_l1(tf.cast(t.rpn_bbox_target, tf.float32) - pred)
    positive = tf.broadcast_to((match == 1)[..., None], tf.shape(loss))
    return _masked_mean(loss, positive)


@register_loss("mrcnn_class_loss", FAMILY)
def mrcnn_class_loss(t: MaskRcnnTerms):
    """Softmax cross-entropy of the box head's class logits, ignoring ROIs whose *predicted*
    class is not active in their image; mean over the others. Label smoothing ``e`` mixes in
    ``e`` times the cross-entropy against the uniform distribution.

    As in matterport, every ROI row counts (zero-padding rows are background targets); unlike
    matterport, which read the first image's active ids for the whole batch, each image uses
    its own row of ``active_class_ids``.
    """
    logits = tf.cast(t.class_logits, tf.float32)
    labels = tf.reshape(tf.cast(t.target_class_ids, tf.int32), tf.shape(logits)[:-1])
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    active = tf.gather(tf.cast(t.active_class_ids, tf.float32), predicted, batch_dims=1)  # (B, T)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if t.label_smoothing:
        uniform = -tf.reduce_mean(tf.nn.log_softmax(logits), axis=-1)
        ce = (1.0 - t.label_smoothing) * ce + t.label_smoothing * uniform
    return _masked_mean(ce, active)


def _gt_slot(t: MaskRcnnTerms):
    """``(class ids (B, T), predicted deltas in the GT-class slot (B, T, 4) float32)``."""
    ids = tf.reshape(tf.cast(t.target_class_ids, tf.int32), tf.shape(t.pred_deltas)[:2])
    return ids, tf.cast(tf.gather(t.pred_deltas, tf.maximum(ids, 0), batch_dims=2), tf.float32)


@register_loss("mrcnn_bbox_loss", FAMILY, role="box")
def mrcnn_bbox_loss(t: MaskRcnnTerms):
    """Smooth-L1 between the target deltas and the prediction in the GT-class slot, averaged
    over the coordinates of positive ROIs (class id > 0)."""
    ids, slot = _gt_slot(t)
    loss = smooth_l1(tf.cast(t.target_deltas, tf.float32) - slot)
    positive = tf.broadcast_to((ids > 0)[..., None], tf.shape(loss))
    return _masked_mean(loss, positive)


def _iou_loss(t: MaskRcnnTerms, kind: str):
    ids, slot = _gt_slot(t)
    rois = tf.cast(t.rois, tf.float32)
    value = iou_family(t.coder.decode(rois, slot), t.coder.decode(rois, tf.cast(t.target_deltas, tf.float32)), kind)
    return _masked_mean(1.0 - value, ids > 0)


@register_loss("mrcnn_giou_loss", FAMILY, role="box")
def mrcnn_giou_loss(t: MaskRcnnTerms):
    """``1 - GIoU`` of the boxes decoded from the GT-class slot and from the targets, mean over positive ROIs."""
    return _iou_loss(t, "giou")


@register_loss("mrcnn_diou_loss", FAMILY, role="box")
def mrcnn_diou_loss(t: MaskRcnnTerms):
    return _iou_loss(t, "diou")


@register_loss("mrcnn_ciou_loss", FAMILY, role="box")
def mrcnn_ciou_loss(t: MaskRcnnTerms):
    return _iou_loss(t, "ciou")


@register_loss("mrcnn_mask_loss", FAMILY)
def mrcnn_mask_loss(t: MaskRcnnTerms):
    """Binary cross-entropy of the GT-class mask, averaged over the pixels of positive ROIs."""
    ids = tf.reshape(tf.cast(t.mask_class_ids, tf.int32), tf.shape(t.pred_masks)[:2])
    p = tf.cast(tf.gather(t.pred_masks, tf.maximum(ids, 0), axis=4, batch_dims=2), tf.float32)  # (B, T, H, W)
    p = tf.clip_by_value(p, BCE_EPSILON, 1.0 - BCE_EPSILON)
    y = tf.cast(t.target_masks, tf.float32)
    bce = -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
    positive = tf.broadcast_to((ids > 0)[..., None, None], tf.shape(bce))
    return _masked_mean(bce, positive)


class MaskRcnnCriterion(Criterion):
    """The recipe's Mask R-CNN terms. ``x``: the model's inputs (``rpn_match``, ``rpn_bbox``
    targets); ``outputs``: the training graph's outputs; ``coder``: the box head's coding."""

    FAMILY = FAMILY
    DEFAULT_TERMS = MASK_RCNN_LOSS_NAMES
    BOX_TERMS = {"smooth_l1": ("mrcnn_bbox_loss",), "giou": ("mrcnn_giou_loss",), "diou": ("mrcnn_diou_loss",),
                 "ciou": ("mrcnn_ciou_loss",)}

    def __init__(self, coder: DeltaCoder, terms=None, label_smoothing: float = 0.0):
        super().__init__(terms, label_smoothing)
        self.coder = coder

    def context(self, x, y, outputs, group=None) -> MaskRcnnTerms:
        o = outputs
        return MaskRcnnTerms(
            rpn_match=x["rpn_match"], rpn_bbox_target=x["rpn_bbox"], rpn_logits=o["rpn_class_logits"], rpn_bbox=o["rpn_bbox"],
            target_class_ids=o["target_class_ids"], target_deltas=o["target_deltas"], class_logits=o["mrcnn_class_logits"],
            pred_deltas=o["mrcnn_bbox"], rois=o.get("rois"),
            # one dataset: every class is active in every image
            active_class_ids=tf.ones_like(o["mrcnn_class_logits"][:, 0, :]),
            # absent without a mask head (Faster R-CNN FPN)
            mask_class_ids=o.get("target_mask_class_ids"), target_masks=o.get("target_masks"), pred_masks=o.get("mrcnn_mask"),
            coder=self.coder, label_smoothing=self.label_smoothing,
        )


class FasterRcnnFpnCriterion(MaskRcnnCriterion):
    """Faster R-CNN FPN's terms: Mask R-CNN's criterion without the mask term (the model has
    no mask head); its box terms (``loss.box``) and label smoothing are Mask R-CNN's."""

    MASK_TERMS = ("mrcnn_mask_loss",)
    DEFAULT_TERMS = MASK_RCNN_LOSS_NAMES[:4]  # all but mrcnn_mask_loss

    @classmethod
    def resolve_terms(cls, terms=None, box: str | None = None) -> tuple[str, ...]:
        names = super().resolve_terms(terms, box)
        masks = [name for name in names if name in cls.MASK_TERMS]
        if masks:
            raise ConfigError(f"loss.terms: '{masks[0]}' needs a mask head, which faster_rcnn_fpn does not have")
        return names
