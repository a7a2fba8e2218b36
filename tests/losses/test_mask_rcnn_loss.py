"""Mask R-CNN losses on hand-computed cases, including the "nothing qualifies -> 0" cases.

Each registered term reads a ``MaskRcnnTerms``; the helpers below fill the fields one term
reads, so each case states its inputs as arrays."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import detectlab
from detectlab.losses import mask_rcnn as terms
from detectlab.losses.mask_rcnn import BCE_EPSILON, MASK_RCNN_LOSS_NAMES, MaskRcnnTerms


def rpn_class_loss(match, logits):
    return terms.rpn_class_loss(MaskRcnnTerms(rpn_match=match, rpn_logits=logits))


def rpn_bbox_loss(match, target, pred):
    return terms.rpn_bbox_loss(MaskRcnnTerms(rpn_match=match, rpn_bbox_target=target, rpn_bbox=pred))


def mrcnn_class_loss(ids, logits, active, smoothing=0.0):
    return terms.mrcnn_class_loss(MaskRcnnTerms(target_class_ids=ids, class_logits=logits, active_class_ids=active,
                                                label_smoothing=smoothing))


def mrcnn_bbox_loss(ids, target, pred):
    return terms.mrcnn_bbox_loss(MaskRcnnTerms(target_class_ids=ids, target_deltas=target, pred_deltas=pred))


def mrcnn_mask_loss(ids, target, pred):
    return terms.mrcnn_mask_loss(MaskRcnnTerms(mask_class_ids=ids, target_masks=target, pred_masks=pred))


def value(x):
    x = float(x)
    assert np.isfinite(x)
    return x


def test_losses_are_registered_and_keras_serialisable():
    for name in MASK_RCNN_LOSS_NAMES:
        fn = detectlab.LOSSES.get(name)
        assert keras.saving.get_registered_object(f"detectlab>{name}") is fn
        assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fn)) is fn


def test_rpn_class_loss_is_softmax_ce_over_non_neutral_anchors():
    match = np.array([[1, -1, 0, 1]], np.int32)
    logits = np.array([[[0, 0], [1, -1], [9, -9], [0, 2]]], np.float32)  # the neutral anchor would cost 18
    expected = (np.log(2) + 2 * np.log(1 + np.exp(-2))) / 3
    assert value(rpn_class_loss(match, logits)) == pytest.approx(expected, rel=1e-5)
    # matterport's (B, N, 1) match and bf16 logits give the same value, in float32
    out = rpn_class_loss(match[..., None], tf.constant(logits, tf.bfloat16))
    assert out.dtype == tf.float32 and float(out) == pytest.approx(expected, rel=1e-5)
    assert value(rpn_class_loss(np.zeros((1, 4), np.int32), logits)) == 0.0


def test_rpn_bbox_loss_is_smooth_l1_mean_over_positive_coordinates():
    match = np.array([[1, 0, -1]], np.int32)
    target = np.array([[[0.5, 2.0, 0, 0], [9, 9, 9, 9], [7, 7, 7, 7]]], np.float32)
    pred = np.zeros((1, 3, 4), np.float32)
    # 0.5 * 0.5^2 = 0.125 and 2 - 0.5 = 1.5 over the 4 coordinates of the one positive anchor
    assert value(rpn_bbox_loss(match, target, pred)) == pytest.approx((0.125 + 1.5) / 4, rel=1e-6)
    assert value(rpn_bbox_loss(np.array([[0, 0, -1]], np.int32), target, pred)) == 0.0


def test_mrcnn_class_loss_masks_rois_whose_predicted_class_is_inactive_per_image():
    ids = np.array([[0, 1], [2, 0]], np.int32)
    logits = np.array([[[0, 0, 5], [0, 0, 0]], [[0, 0, 5], [1, 0, 0]]], np.float32)
    active = np.array([[1, 1, 0], [1, 1, 1]], np.float32)  # class 2 unknown to image 0's dataset
    # image 0 ROI 0 predicts class 2 (inactive there): ignored; ROI 1 predicts 0 (tie -> first): CE log 3
    expected = (np.log(3) + (np.log(2 + np.exp(5)) - 5) + (np.log(np.e + 2) - 1)) / 3
    assert value(mrcnn_class_loss(ids, logits, active)) == pytest.approx(expected, rel=1e-5)
    # with image 0's row for both images (matterport's shortcut) image 1's ROI 0 would be dropped
    assert value(mrcnn_class_loss(ids, logits, active[[0, 0]])) == pytest.approx(
        (np.log(3) + np.log(np.e + 2) - 1) / 2, rel=1e-5)
    none_active = np.array([[1, 0, 0], [1, 0, 0]], np.float32)
    only_class_2 = np.array([[[0, 0, 5]] * 2] * 2, np.float32)
    assert value(mrcnn_class_loss(ids, only_class_2, none_active)) == 0.0


def test_mrcnn_bbox_loss_uses_the_gt_class_slot_of_positive_rois():
    ids = np.array([[2, 0, 1]], np.int32)
    target = np.array([[[1, 0, 0, 0], [5, 5, 5, 5], [0.2, 0, 0, 0]]], np.float32)
    pred = np.full((1, 3, 3, 4), 100.0, np.float32)  # every other slot is far off
    pred[0, 0, 2] = [0, 0, 0, 3]
    pred[0, 2, 1] = 0
    # ROI 0: 0.5 (|1| -> 0.5 * 1) + 2.5 (|3| - 0.5); ROI 2: 0.5 * 0.2^2 = 0.02; 8 coordinates
    assert value(mrcnn_bbox_loss(ids, target, pred)) == pytest.approx((0.5 + 2.5 + 0.02) / 8, rel=1e-5)
    assert value(mrcnn_bbox_loss(np.zeros((1, 3), np.int32), target, pred)) == 0.0


def test_mrcnn_mask_loss_is_bce_of_the_gt_class_mask_of_positive_rois():
    ids = np.array([[1, 0]], np.int32)
    target = np.array([[[[1, 0], [0, 1]], [[1, 1], [1, 1]]]], np.float32)
    pred = np.full((1, 2, 2, 2, 2), 0.01, np.float32)  # class 0 slot and ROI 1 would cost a lot
    pred[0, 0, :, :, 1] = [[0.9, 0.2], [0.5, 0.7]]
    expected = -(np.log(0.9) + np.log(0.8) + np.log(0.5) + np.log(0.7)) / 4
    assert value(mrcnn_mask_loss(ids, target, pred)) == pytest.approx(expected, rel=1e-5)
    out = mrcnn_mask_loss(ids, target, tf.constant(pred, tf.bfloat16))
    assert out.dtype == tf.float32 and float(out) == pytest.approx(expected, rel=2e-2)
    # a saturated prediction is clipped to 1 - epsilon (in float32), not infinite
    pred[0, 0, 0, 1, 1] = 1.0
    clipped = -np.log(1.0 - np.float64(np.float32(1.0 - BCE_EPSILON)))
    assert value(mrcnn_mask_loss(ids, target, pred)) == pytest.approx(
        (-(np.log(0.9) + np.log(0.5) + np.log(0.7)) + clipped) / 4, rel=1e-4)
    assert value(mrcnn_mask_loss(np.zeros((1, 2), np.int32), target, pred)) == 0.0


def test_losses_have_gradients_only_where_they_count():
    ids = tf.constant([[1, 0]])
    pred = tf.Variable(np.full((1, 2, 3, 4), 0.5, np.float32))
    with tf.GradientTape() as tape:
        loss = mrcnn_bbox_loss(ids, tf.zeros((1, 2, 4)), pred)
    grad = tape.gradient(loss, pred).numpy()
    assert np.all(np.isfinite(grad))
    assert np.count_nonzero(grad) == 4 and np.count_nonzero(grad[0, 0, 1]) == 4
