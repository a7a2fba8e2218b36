"""Each family's criterion: terms chosen by registered name from the recipe, the box swap,
label smoothing, and one-line errors for bad names."""

import numpy as np
import pytest
import tensorflow as tf

from detectlab.config import LossConfig
from detectlab.errors import ConfigError
from detectlab.losses.faster_rcnn import FasterRcnnCriterion
from detectlab.losses.mask_rcnn import MaskRcnnCriterion
from detectlab.losses.yolo import YoloCriterion
from detectlab.models.yolov3 import YoloV3


def test_box_choice_replaces_the_box_terms_in_place():
    assert YoloCriterion.resolve_terms() == ("yolo_xy_loss", "yolo_wh_loss", "yolo_confidence_loss", "yolo_class_loss")
    assert YoloCriterion.resolve_terms(box="ciou") == ("yolo_ciou_loss", "yolo_confidence_loss", "yolo_class_loss")
    assert YoloCriterion.resolve_terms(["yolo_class_loss", "yolo_giou_loss"], box="diou") == ("yolo_class_loss", "yolo_diou_loss")
    assert MaskRcnnCriterion.resolve_terms(box="giou")[3] == "mrcnn_giou_loss"
    assert FasterRcnnCriterion.resolve_terms(box="ciou") == ("rpn_loss_cls", "rpn_loss_regr", "class_loss_cls", "class_loss_ciou")
    assert FasterRcnnCriterion.resolve_terms(box="smooth_l1") == FasterRcnnCriterion.DEFAULT_TERMS


@pytest.mark.parametrize("terms, box, message", [
    (["yolo_xy_los"], None, r"loss.terms: unknown loss 'yolo_xy_los' \(did you mean 'yolo_xy_loss'"),
    (["rpn_loss_cls"], None, "loss.terms: 'rpn_loss_cls' is not a yolov3 loss"),
    (None, "iou3", "loss.box: 'iou3' is not a box loss of yolov3 \\(one of: xywh, giou, diou, ciou\\)"),
    (["yolo_class_loss", "yolo_class_loss"], None, "'yolo_class_loss' is listed twice"),
])
def test_bad_names_are_one_line_errors(terms, box, message):
    with pytest.raises(ConfigError, match=message):
        YoloV3.loss_settings(LossConfig(terms=terms, box=box))


def test_weights_follow_the_chosen_terms():
    settings = YoloV3.loss_settings(LossConfig(box="ciou", weights={"yolo_ciou_loss": 3.0}))
    assert settings["loss_terms"] == ["yolo_ciou_loss", "yolo_confidence_loss", "yolo_class_loss"]
    with pytest.raises(ConfigError, match="loss.weights.yolo_xy_loss: not a loss of YoloV3"):
        YoloV3.loss_settings(LossConfig(box="ciou", weights={"yolo_xy_loss": 3.0}))


def test_yolo_label_smoothing_moves_class_targets_to_1_minus_e_over_2():
    target = np.zeros((1, 2, 2, 1, 6), np.float32)
    target[0, 0, 0, 0] = [0.2, 0.3, 0.25, 0.5, 1.0, 1.0]
    raw = np.zeros((1, 2, 2, 7), np.float32)
    raw[0, 0, 0, 5:7] = [-1.0, 2.0]  # class logits of the object's cell
    y = {"targets_0": target, "gt_boxes": target[0, 0, 0, 0, :4].reshape(1, 1, 4)}
    criterion = YoloCriterion([[16, 16]], [[0]], 2, terms=["yolo_class_loss"], label_smoothing=0.1)
    got = float(criterion(None, y, [tf.constant(raw)])["yolo_class_loss"])
    t, z = np.array([0.05, 0.95]), np.array([-1.0, 2.0])
    assert got == pytest.approx(np.sum(np.log1p(np.exp(z)) - t * z), rel=1e-5)
