import numpy as np
import pytest
import tensorflow as tf

from detectlab.losses import faster_rcnn as terms
from detectlab.losses.faster_rcnn import EPSILON, FasterRcnnTerms, class_accuracy


# each registered term reads a FasterRcnnTerms: these fill the fields one term reads
def rpn_loss_cls(y_true, y_pred):
    return terms.rpn_loss_cls(FasterRcnnTerms(rpn_class=y_true, rpn_scores=y_pred))


def rpn_loss_regr(y_true, y_pred):
    return terms.rpn_loss_regr(FasterRcnnTerms(rpn_regress=y_true, rpn_deltas=y_pred))


def class_loss_cls(y_true, y_pred, smoothing=0.0):
    return terms.class_loss_cls(FasterRcnnTerms(classes=y_true, class_probs=y_pred, label_smoothing=smoothing))


def class_loss_regr(y_true, y_pred):
    return terms.class_loss_regr(FasterRcnnTerms(regress=y_true, class_deltas=y_pred))


def test_rpn_loss_cls_is_bce_over_sampled_anchors_with_labels_first():
    # 1x1 cell, 3 anchors: sampled positive (p=0.8), sampled negative (p=0.3), neutral (p=0.9)
    y_true = np.array([[[[1, 1, 0, 1, 0, 0]]]], np.float32)  # [valid | positive]
    y_pred = np.array([[[[0.8, 0.3, 0.9]]]], np.float32)
    expected = (-np.log(0.8) - np.log(0.7)) / (2 + 3 * EPSILON)
    assert float(rpn_loss_cls(tf.constant(y_true), tf.constant(y_pred))) == pytest.approx(expected, rel=1e-5)


def test_rpn_loss_regr_is_smooth_l1_on_positives():
    mask = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)  # anchor 0 positive, anchor 1 not
    target = np.array([0.5, 2.0, 0, 0, 9, 9, 9, 9], np.float32)
    y_true = np.concatenate([mask, target])[None, None, None]
    y_pred = np.zeros((1, 1, 1, 8), np.float32)
    # smooth L1: 0.5 * 0.5^2 = 0.125 and 2 - 0.5 = 1.5; divided by sum(eps + mask) = 4 + 8 eps
    expected = (0.125 + 1.5) / (4 + 8 * EPSILON)
    assert float(rpn_loss_regr(tf.constant(y_true), tf.constant(y_pred))) == pytest.approx(expected, rel=1e-5)


def test_class_losses_average_over_every_image_and_skip_padding():
    y_true = np.zeros((2, 2, 3), np.float32)
    y_true[0, 0, 0] = 1  # image 0: one real ROI of class 0; row 1 is padding
    y_true[1, 0, 2] = 1  # image 1: background, and class 1
    y_true[1, 1, 1] = 1
    y_pred = np.full((2, 2, 3), 1 / 3, np.float32)
    y_pred[0, 0] = [0.5, 0.25, 0.25]
    expected = (-np.log(0.5) - 2 * np.log(1 / 3)) / 3  # all three real ROIs of both images
    assert float(class_loss_cls(tf.constant(y_true), tf.constant(y_pred))) == pytest.approx(expected, rel=1e-5)
    assert float(class_accuracy(tf.constant(y_true), tf.constant(y_pred))) == pytest.approx(1 / 3)


def test_class_loss_regr_uses_the_true_class_slot():
    # 2 classes -> 8 outputs; ROI of class 1: its slot is columns 4..7
    mask = np.array([0, 0, 0, 0, 1, 1, 1, 1], np.float32)
    target = np.array([5, 5, 5, 5, 1.0, 0, 0, 0], np.float32)
    y_true = np.concatenate([mask, target])[None, None]
    y_pred = np.zeros((1, 1, 8), np.float32)
    assert float(class_loss_regr(tf.constant(y_true), tf.constant(y_pred))) == pytest.approx(0.5 / (4 + 8 * EPSILON), rel=1e-5)
