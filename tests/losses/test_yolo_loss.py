"""Each YOLO loss term on a hand-made one-scale case, including an ignored prediction."""

import numpy as np
import tensorflow as tf

from detectlab.losses.yolo import YoloCriterion

LN2 = np.log(2.0)


def case(class_weights=None):
    # one scale: 2x2 grid at 64 px (stride 32), one 16x16 anchor, 2 classes
    loss = YoloCriterion(anchors=[[16, 16]], anchor_masks=[[0]], num_classes=2, ignore_thresh=0.5, class_weights=class_weights)
    raw = np.zeros((1, 2, 2, 7), np.float32)  # all logits 0: sigmoid 0.5, exp 1
    target = np.zeros((1, 2, 2, 1, 6), np.float32)
    target[0, 0, 0, 0] = [0.2, 0.3, 0.25, 0.5, 1.0, 1.0]  # object in cell (row 0, col 0), class 1
    gt = np.zeros((1, 3, 4), np.float32)
    gt[0, 0] = [0.2, 0.3, 0.25, 0.5]
    # a second ground truth exactly where cell (row 0, col 1) predicts (centre 0.75, 0.25,
    # size 16/64): that prediction has IoU 1 with a GT, so it is ignored by the confidence loss
    gt[0, 1] = [0.75, 0.25, 0.25, 0.25]
    return loss(None, {"targets_0": target, "gt_boxes": gt}, [tf.constant(raw)])


def test_xy_loss():
    # BCE(t, logit 0) = ln 2 for any target t; box_loss_scale = 2 - 0.25 * 0.5
    np.testing.assert_allclose(case()["yolo_xy_loss"].numpy(), 1.875 * 2 * LN2, rtol=1e-5)


def test_wh_loss():
    # log(true wh / anchor) = (log(0.25*64/16), log(0.5*64/16)) = (0, ln 2); raw wh = 0
    np.testing.assert_allclose(case()["yolo_wh_loss"].numpy(), 1.875 * 0.5 * (0.0 + LN2**2), rtol=1e-5)


def test_confidence_loss_skips_the_ignored_prediction():
    # object cell: BCE(1, 0) = ln 2; cells (1,0) and (1,1): BCE(0, 0) = ln 2 each;
    # cell (0,1) overlaps the second GT with IoU 1 >= 0.5: ignored
    np.testing.assert_allclose(case()["yolo_confidence_loss"].numpy(), 3 * LN2, rtol=1e-5)


def test_class_loss_with_per_class_weights():
    np.testing.assert_allclose(case()["yolo_class_loss"].numpy(), 2 * LN2, rtol=1e-5)
    np.testing.assert_allclose(case(class_weights=[1.0, 3.0])["yolo_class_loss"].numpy(), 4 * LN2, rtol=1e-5)


def test_terms_are_divided_by_batch_size():
    loss = YoloCriterion(anchors=[[16, 16]], anchor_masks=[[0]], num_classes=2)
    one = case()
    raw = tf.zeros((2, 2, 2, 7))
    target = np.zeros((2, 2, 2, 1, 6), np.float32)
    target[:, 0, 0, 0] = [0.2, 0.3, 0.25, 0.5, 1.0, 1.0]
    gt = np.zeros((2, 3, 4), np.float32)
    gt[:, 0] = [0.2, 0.3, 0.25, 0.5]
    two = loss(None, {"targets_0": target, "gt_boxes": gt}, [raw])
    np.testing.assert_allclose(two["yolo_xy_loss"].numpy(), one["yolo_xy_loss"].numpy(), rtol=1e-5)


def test_ground_truth_padding_does_not_change_the_loss():
    loss = YoloCriterion(anchors=[[16, 16]], anchor_masks=[[0]], num_classes=2)
    raw = tf.constant(np.random.default_rng(0).normal(size=(1, 2, 2, 7)).astype("float32"))
    target = np.zeros((1, 2, 2, 1, 6), np.float32)
    target[0, 0, 0, 0] = [0.2, 0.3, 0.25, 0.5, 1.0, 1.0]
    gt = np.zeros((1, 100, 4), np.float32)
    gt[0, :2] = [[0.2, 0.3, 0.25, 0.5], [0.75, 0.25, 0.25, 0.25]]
    padded = loss(None, {"targets_0": target, "gt_boxes": gt}, [raw])
    tight = loss(None, {"targets_0": target, "gt_boxes": gt[:, :2]}, [raw])
    for name in padded:
        np.testing.assert_allclose(padded[name].numpy(), tight[name].numpy(), rtol=1e-6)
