"""IoU-family box losses (GIoU, DIoU, CIoU) against hand computations, their gradients where
the boxes do not overlap, and each family's IoU term on a hand-made case."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detectlab.box_coding import DeltaCoder
from detectlab.layers.box_ops import iou_family
from detectlab.losses import faster_rcnn, mask_rcnn
from detectlab.losses.yolo import YoloCriterion

# y1 x1 y2 x2
OVERLAP = ([0, 0, 2, 2], [1, 1, 3, 3])  # inter 1, union 7, enclosure 3x3, centres 2 apart (squared)
WIDER = ([0, 0, 2, 4], [0, 0, 2, 2])  # inter 4, union 8, enclosure = a, centres 1 apart; aspects 2 and 1
APART = ([0, 0, 1, 1], [2, 2, 3, 3])  # no overlap: union 2, enclosure 9, centre distance^2 8, diagonal^2 18


def value(boxes, kind):
    a, b = (tf.constant(x, tf.float32) for x in boxes)
    return float(iou_family(a, b, kind))


@pytest.mark.parametrize("boxes, kind, expected", [
    (OVERLAP, "iou", 1 / 7), (OVERLAP, "giou", 1 / 7 - 2 / 9), (OVERLAP, "diou", 1 / 7 - 2 / 18),
    (OVERLAP, "ciou", 1 / 7 - 2 / 18),  # same aspect ratio: v = 0
    (WIDER, "giou", 0.5), (WIDER, "diou", 0.5 - 1 / 20),
    (APART, "iou", 0.0), (APART, "giou", -7 / 9), (APART, "diou", -8 / 18), (APART, "ciou", -8 / 18),
])
def test_values_against_hand_computations(boxes, kind, expected):
    assert value(boxes, kind) == pytest.approx(expected, abs=1e-5)


def test_ciou_adds_the_aspect_ratio_term():
    v = 4 / math.pi**2 * (math.atan(2 / 2) - math.atan(4 / 2)) ** 2  # true w/h = 1, predicted 2
    alpha = v / (1 - 0.5 + v)
    assert value(WIDER, "ciou") == pytest.approx(0.5 - 1 / 20 - alpha * v, abs=1e-5)


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_gradients_are_finite_and_pull_boxes_together_without_overlap(kind):
    a = tf.Variable(APART[0], dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = 1.0 - iou_family(a, tf.constant(APART[1], tf.float32), kind)
    grad = tape.gradient(loss, a).numpy()
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    # a step against the gradient moves the predicted box towards the true one
    assert value(((a - 0.1 * grad).numpy(), APART[1]), kind) > value(APART, kind)


def test_degenerate_boxes_give_finite_values_and_gradients():
    a = tf.Variable([0.5, 0.5, 0.5, 0.5], dtype=tf.float32)  # zero size
    with tf.GradientTape() as tape:
        loss = 1.0 - iou_family(a, tf.constant([0.5, 0.5, 0.5, 0.5]), "ciou")
    assert np.isfinite(float(loss)) and np.all(np.isfinite(tape.gradient(loss, a).numpy()))


def test_yolo_giou_term_on_one_assigned_cell():
    # 2x2 grid at 64 px, one 16x16 anchor; raw zeros predict (0.25, 0.25) of size 0.25 in cell (0, 0)
    criterion = YoloCriterion([[16, 16]], [[0]], num_classes=2, terms=YoloCriterion.resolve_terms(box="giou"))
    assert criterion.names == ("yolo_giou_loss", "yolo_confidence_loss", "yolo_class_loss")
    target = np.zeros((1, 2, 2, 1, 6), np.float32)
    target[0, 0, 0, 0] = [0.2, 0.3, 0.25, 0.5, 1.0, 1.0]  # cx cy w h: x 0.075-0.325, y 0.05-0.55
    gt = np.zeros((1, 1, 4), np.float32)
    gt[0, 0] = target[0, 0, 0, 0, :4]
    losses = criterion(None, {"targets_0": target, "gt_boxes": gt}, [tf.zeros((1, 2, 2, 7))])
    # predicted x, y 0.125-0.375: inter 0.2 * 0.25 = 0.05, union 0.0625 + 0.125 - 0.05, enclosure 0.3 * 0.5
    iou, union, enclosure = 0.05 / 0.1375, 0.1375, 0.15
    assert float(losses["yolo_giou_loss"]) == pytest.approx(1 - (iou - (enclosure - union) / enclosure), rel=1e-5)


def test_rcnn_iou_terms_decode_both_deltas_from_the_roi():
    # ROI 0..0.5 square; target deltas 0 (the ROI itself); the prediction doubles the width:
    # box x -0.25..0.75, IoU 0.25 / 0.5 = 0.5, enclosure = the prediction, so GIoU 0.5 too
    roi = np.array([[[0.0, 0.0, 0.5, 0.5]]], np.float32)
    coder = DeltaCoder.matterport((0.1, 0.1, 0.2, 0.2))
    pred = np.zeros((1, 1, 2, 4), np.float32)  # (B, T, C+1, 4): class 1's slot
    pred[0, 0, 1] = [0, 0, 0, math.log(2) / 0.2]
    terms = mask_rcnn.MaskRcnnTerms(target_class_ids=np.array([[1]]), target_deltas=np.zeros((1, 1, 4), np.float32),
                                    pred_deltas=pred, rois=roi, coder=coder)
    assert float(mask_rcnn.mrcnn_giou_loss(terms)) == pytest.approx(0.5, rel=1e-5)
    assert float(mask_rcnn.mrcnn_diou_loss(terms)) == pytest.approx(0.5, rel=1e-5)  # same centre
    background = terms._replace(target_class_ids=np.array([[0]]))
    assert float(mask_rcnn.mrcnn_ciou_loss(background)) == 0.0

    coder = DeltaCoder.keras_frcnn((8.0, 8.0, 4.0, 4.0))  # (tx, ty, tw, th) times std
    regress = np.zeros((1, 2, 16), np.float32)  # 2 classes, ROI 0 of class 1 (slot 4..7), ROI 1 background
    regress[0, 0, 4:8] = 1.0
    deltas = np.zeros((1, 2, 8), np.float32)
    deltas[0, 0, 4:8] = [0, 0, 4 * math.log(2), 0]
    deltas[0, 1] = 9.0  # a background row: not counted
    terms = faster_rcnn.FasterRcnnTerms(regress=regress, class_deltas=deltas, rois=np.repeat(roi, 2, 1), coder=coder)
    assert float(faster_rcnn.class_loss_giou(terms)) == pytest.approx(0.5, rel=1e-5)
