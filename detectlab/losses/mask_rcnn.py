"""Mask R-CNN losses (matterport definitions), registered by name.

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

import tensorflow as tf

from detectlab.losses.faster_rcnn import smooth_l1
from detectlab.losses.registry import register_loss
from detectlab.losses.replicas import replica_mean

MASK_RCNN_LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")
BCE_EPSILON = 1e-7  # Keras' backend epsilon, as matterport's K.binary_crossentropy


def _masked_mean(values, mask):
    """Mean of ``values`` where ``mask`` (same shape) is true; 0 when nothing is. Under
    ``tf.distribute`` the count is the replicas' mean (:mod:`detectlab.losses.replicas`)."""
    mask = tf.cast(mask, tf.float32)
    total = tf.reduce_sum(tf.where(mask > 0, values, 0.0) * mask)
    return tf.math.divide_no_nan(total, replica_mean(tf.reduce_sum(mask)))


def _match(rpn_match, like):
    """``rpn_match`` as int32 with the shape of ``like`` (accepts matterport's trailing ``1``)."""
    return tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(like))


@register_loss("rpn_class_loss")
def rpn_class_loss(rpn_match, rpn_logits):
    """``rpn_match (B, N)`` 1 positive / -1 negative / 0 neutral, ``rpn_logits (B, N, 2)``
    (background, foreground): softmax cross-entropy averaged over non-neutral anchors."""
    logits = tf.cast(rpn_logits, tf.float32)
    match = _match(rpn_match, logits[..., 0])
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(match == 1, tf.int32), logits=logits)
    return _masked_mean(ce, match != 0)


@register_loss("rpn_bbox_loss")
def rpn_bbox_loss(rpn_match, rpn_bbox_target, rpn_bbox):
    """``rpn_match (B, N)``, ``rpn_bbox_target (B, N, 4)`` (dense; only rows of positive anchors
    are read), ``rpn_bbox (B, N, 4)``: smooth-L1 averaged over the positives' coordinates."""
    pred = tf.cast(rpn_bbox, tf.float32)
    match = _match(rpn_match, pred[..., 0])
    loss = smooth_l1(tf.cast(rpn_bbox_target, tf.float32) - pred)
    positive = tf.broadcast_to((match == 1)[..., None], tf.shape(loss))
    return _masked_mean(loss, positive)


@register_loss("mrcnn_class_loss")
def mrcnn_class_loss(target_class_ids, logits, active_class_ids):
    """``target_class_ids (B, T)``, ``logits (B, T, C+1)``, ``active_class_ids (B, C+1)`` (1 where
    the class belongs to the image's dataset): softmax cross-entropy, ignoring ROIs whose
    *predicted* class is not active in their image; mean over the others.

    As in matterport, every ROI row counts (zero-padding rows are background targets); unlike
    matterport, which read the first image's active ids for the whole batch, each image uses
    its own row of ``active_class_ids``.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.reshape(tf.cast(target_class_ids, tf.int32), tf.shape(logits)[:-1])
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    active = tf.gather(tf.cast(active_class_ids, tf.float32), predicted, batch_dims=1)  # (B, T)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return _masked_mean(ce, active)


@register_loss("mrcnn_bbox_loss")
def mrcnn_bbox_loss(target_class_ids, target_deltas, pred_deltas):
    """``target_class_ids (B, T)``, ``target_deltas (B, T, 4)``, ``pred_deltas (B, T, C+1, 4)``:
    smooth-L1 between the targets and the prediction in the GT-class slot, averaged over the
    coordinates of positive ROIs (class id > 0)."""
    ids = tf.reshape(tf.cast(target_class_ids, tf.int32), tf.shape(pred_deltas)[:2])
    slot = tf.cast(tf.gather(pred_deltas, tf.maximum(ids, 0), batch_dims=2), tf.float32)  # (B, T, 4)
    loss = smooth_l1(tf.cast(target_deltas, tf.float32) - slot)
    positive = tf.broadcast_to((ids > 0)[..., None], tf.shape(loss))
    return _masked_mean(loss, positive)


@register_loss("mrcnn_mask_loss")
def mrcnn_mask_loss(target_class_ids, target_masks, pred_masks):
    """``target_class_ids (B, T)``, ``target_masks (B, T, H, W)`` 0/1, ``pred_masks (B, T, H, W, C+1)``
    sigmoid probabilities: binary cross-entropy of the GT-class mask, averaged over the pixels
    of positive ROIs."""
    ids = tf.reshape(tf.cast(target_class_ids, tf.int32), tf.shape(pred_masks)[:2])
    p = tf.cast(tf.gather(pred_masks, tf.maximum(ids, 0), axis=4, batch_dims=2), tf.float32)  # (B, T, H, W)
    p = tf.clip_by_value(p, BCE_EPSILON, 1.0 - BCE_EPSILON)
    y = tf.cast(target_masks, tf.float32)
    bce = -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
    positive = tf.broadcast_to((ids > 0)[..., None, None], tf.shape(bce))
    return _masked_mean(bce, positive)
