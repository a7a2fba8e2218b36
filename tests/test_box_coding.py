"""Each family's box coder: hand-computed values, encode -> decode = identity in numpy and in
TensorFlow, numpy and TensorFlow agreeing, and the config round trip."""

import numpy as np
import pytest
import tensorflow as tf

from detectlab.box_coding import DeltaCoder, YoloGridCoder
from detectlab.models.faster_rcnn import FasterRCNNConfig
from detectlab.models.faster_rcnn import box_coders as faster_rcnn_coders
from detectlab.models.mask_rcnn import MaskRCNNConfig
from detectlab.models.mask_rcnn import box_coders as mask_rcnn_coders

ANCHOR = np.array([[0, 0, 10, 20]], np.float32)  # h 10, w 20, centre (5, 10)
GT = np.array([[2, 4, 22, 24]], np.float32)  # h 20, w 20, centre (12, 14)
PLAIN = np.array([[7 / 10, 4 / 20, np.log(2.0), 0.0]], np.float32)  # dy, dx, dh, dw


def family_coders():
    f, m = FasterRCNNConfig(), MaskRCNNConfig()
    rpn, roi = faster_rcnn_coders(f.rpn_regr_std, f.classifier_regr_std)
    m_rpn, m_box = mask_rcnn_coders(m.rpn_bbox_std, m.bbox_std)
    return {"faster_rcnn_rpn": rpn, "faster_rcnn_roi": roi, "mask_rcnn_rpn": m_rpn, "mask_rcnn_box": m_box}


def test_hand_computed_codings_of_the_reference_code_bases():
    coders = family_coders()
    # keras-frcnn: (tx, ty, tw, th) times 4 (RPN) and times (8, 8, 4, 4) (classifier)
    np.testing.assert_allclose(coders["faster_rcnn_rpn"].encode(ANCHOR, GT), PLAIN[:, [1, 0, 3, 2]] * 4, rtol=1e-6)
    np.testing.assert_allclose(coders["faster_rcnn_roi"].encode(ANCHOR, GT), PLAIN[:, [1, 0, 3, 2]] * [8, 8, 4, 4], rtol=1e-6)
    # matterport: (dy, dx, dh, dw) / (0.1, 0.1, 0.2, 0.2), for the RPN and the box head
    for name in ("mask_rcnn_rpn", "mask_rcnn_box"):
        np.testing.assert_allclose(coders[name].encode(ANCHOR, GT), PLAIN / [0.1, 0.1, 0.2, 0.2], rtol=1e-5)


@pytest.mark.parametrize("name", sorted(family_coders()))
def test_encode_then_decode_is_the_identity_in_numpy_and_tensorflow(name):
    coder = family_coders()[name]
    rng = np.random.default_rng(0)
    corner, size = rng.uniform(0, 0.7, (50, 2)), rng.uniform(0.05, 0.3, (50, 2))
    refs = np.concatenate([corner, corner + size], 1)  # y1 x1 y2 x2
    boxes = refs + rng.normal(0, 0.05, refs.shape)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.01)
    refs, boxes = refs.astype(np.float32), boxes.astype(np.float32)
    coded = coder.encode(refs, boxes)
    assert coded.dtype == np.float32 and coded.shape == (50, 4)
    np.testing.assert_allclose(coder.decode(refs, coded), boxes, atol=1e-5)
    coded_tf = coder.encode(tf.constant(refs), tf.constant(boxes))
    np.testing.assert_allclose(coded_tf.numpy(), coded, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(coder.decode(tf.constant(refs), coded_tf).numpy(), boxes, atol=1e-5)


def test_decode_caps_size_changes_and_clips_to_the_image():
    coder = DeltaCoder.matterport((0.1, 0.1, 0.2, 0.2))
    huge = np.array([[0.0, 0.0, 100.0, 100.0]], np.float32)  # log ratio 20 after the std: capped at 4
    box = coder.decode(np.array([[0.4, 0.4, 0.6, 0.6]], np.float32), huge)
    np.testing.assert_allclose(box[0, 2] - box[0, 0], 0.2 * np.exp(4.0), rtol=1e-5)
    clipped = coder.decode(tf.constant([[0.4, 0.4, 0.6, 0.6]]), tf.constant(huge), clip=True).numpy()
    np.testing.assert_allclose(clipped, [[0.0, 0.0, 1.0, 1.0]])


def test_coders_round_trip_through_their_config():
    for coder in family_coders().values():
        assert DeltaCoder.from_config(coder.get_config()) == coder
    assert YoloGridCoder.from_config(YoloGridCoder().get_config()) == YoloGridCoder()
    with pytest.raises(ValueError, match="required"):
        DeltaCoder.from_config(None)
    with pytest.raises(ValueError, match="positive"):
        DeltaCoder(weights=(1, 1, 0, 1))


def test_yolo_grid_coder_encode_then_decode_is_the_identity():
    coder = YoloGridCoder()
    anchors = tf.constant([[10.0, 13.0], [33.0, 23.0]])
    rng = np.random.default_rng(1)
    level, grid = 1, 4  # stride 16: a 64 px input
    cells = np.stack(np.meshgrid(np.arange(grid), np.arange(grid)), -1)[:, :, None, :]  # x, y
    xy = (cells + rng.uniform(0.05, 0.95, (grid, grid, 2, 2))) / grid
    wh = rng.uniform(0.05, 0.9, (grid, grid, 2, 2))
    boxes = tf.constant(np.concatenate([xy, wh], -1)[None], tf.float32)  # (1, 4, 4, 2, 4) cx cy w h
    offsets, logs = coder.encode(boxes, anchors, level, tf.ones_like(boxes[..., :1]))
    raw_xy = tf.math.log(offsets / (1 - offsets))  # sigmoid^-1
    np.testing.assert_allclose(coder.decode(raw_xy, logs, anchors, level).numpy(), boxes.numpy(), atol=1e-5)
    # where no object is present the log-ratio target is 0
    _, logs = coder.encode(boxes, anchors, level, tf.zeros_like(boxes[..., :1]))
    assert not logs.numpy().any()
