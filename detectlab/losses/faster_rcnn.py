"""Faster R-CNN losses (keras-frcnn definitions), registered by name.

Shapes: ``A`` anchors per cell, ``R`` ROIs per image, ``C`` object classes (the classifier
has ``C + 1`` outputs, background last). Targets come from
:mod:`detectlab.data.rcnn_targets`. Fixed against the reference: binary cross-entropy takes
(labels, predictions) in the right order, and the classifier's class loss averages over
every image of the batch, not only the first. As in the reference, each smooth-L1 loss is
divided by ``sum(epsilon + mask)`` (epsilon added per element). Under ``tf.distribute`` each
divisor is the mean over replicas of the replicas' counts (:mod:`detectlab.losses.replicas`).
"""

from __future__ import annotations

import tensorflow as tf

from detectlab.losses.registry import register_loss
from detectlab.losses.replicas import replica_mean

EPSILON = 1e-4
FASTER_RCNN_LOSS_NAMES = ("rpn_loss_cls", "rpn_loss_regr", "class_loss_cls", "class_loss_regr")


def smooth_l1(x):
    ax = tf.abs(x)
    return tf.where(ax <= 1.0, 0.5 * x * x, ax - 0.5)


@register_loss("rpn_loss_cls")
def rpn_loss_cls(y_true, y_pred):
    """``y_true (B, H, W, 2A)`` = [sampled | positive], ``y_pred (B, H, W, A)`` probabilities:
    binary cross-entropy over the sampled anchors."""
    a = tf.shape(y_pred)[-1]
    valid, labels = y_true[..., :a], y_true[..., a:]
    p = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-7, 1 - 1e-7)
    bce = -(labels * tf.math.log(p) + (1 - labels) * tf.math.log(1 - p))
    return tf.reduce_sum(valid * bce) / replica_mean(tf.reduce_sum(EPSILON + valid))


@register_loss("rpn_loss_regr")
def rpn_loss_regr(y_true, y_pred):
    """``y_true (B, H, W, 8A)`` = [positive x4 | targets], ``y_pred (B, H, W, 4A)``: smooth L1
    on positive anchors."""
    n = tf.shape(y_pred)[-1]
    mask, target = y_true[..., :n], y_true[..., n:]
    return tf.reduce_sum(mask * smooth_l1(target - tf.cast(y_pred, tf.float32))) / replica_mean(tf.reduce_sum(EPSILON + mask))


@register_loss("class_loss_cls")
def class_loss_cls(y_true, y_pred):
    """``y_true (B, R, C+1)`` one-hot (all-zero rows are padding), ``y_pred`` softmax:
    categorical cross-entropy averaged over the real ROIs of the whole batch."""
    p = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-7, 1.0)
    ce = -tf.reduce_sum(y_true * tf.math.log(p), axis=-1)
    rows = tf.reduce_sum(y_true, axis=-1)
    return tf.reduce_sum(ce) / tf.maximum(replica_mean(tf.reduce_sum(rows)), 1.0)


@register_loss("class_loss_regr")
def class_loss_regr(y_true, y_pred):
    """``y_true (B, R, 8C)`` = [class mask x4 | targets], ``y_pred (B, R, 4C)``: smooth L1 on the
    true class's slot of foreground ROIs."""
    n = tf.shape(y_pred)[-1]
    mask, target = y_true[..., :n], y_true[..., n:]
    return tf.reduce_sum(mask * smooth_l1(target - tf.cast(y_pred, tf.float32))) / replica_mean(tf.reduce_sum(EPSILON + mask))


def class_accuracy(y_true, y_pred):
    """Fraction of real ROIs whose arg-max class is right."""
    rows = tf.reduce_sum(y_true, axis=-1)
    right = tf.cast(tf.equal(tf.argmax(y_true, -1), tf.argmax(y_pred, -1)), tf.float32) * rows
    return tf.reduce_sum(right) / tf.maximum(replica_mean(tf.reduce_sum(rows)), 1.0)
