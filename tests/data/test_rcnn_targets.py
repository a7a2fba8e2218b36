"""Faster R-CNN targets on hand-computed cases."""

import numpy as np
import pytest

from detectlab.anchor_grid import REFERENCE_RATIOS, anchor_shapes, grid_anchors
from detectlab.box_coding import DeltaCoder
from detectlab.data.rcnn_targets import RpnTargetEncoder


def test_anchor_grid_and_reference_ratios():
    shapes = anchor_shapes([128], REFERENCE_RATIOS)  # (h, w): 1:1, tall 1:2, wide 2:1, equal areas
    np.testing.assert_allclose(shapes[:, 0] * shapes[:, 1], 128 * 128, rtol=1e-5)
    assert shapes[1, 0] / shapes[1, 1] == pytest.approx(2.0) and shapes[2, 1] / shapes[2, 0] == pytest.approx(2.0)
    anchors = grid_anchors((2, 3), 16, [8, 16], [(1, 1)])
    assert anchors.shape == (2 * 3 * 2, 4)
    np.testing.assert_allclose(anchors[0], [4, 4, 12, 12])  # cell (0,0), scale 8, centred at (8, 8)
    np.testing.assert_allclose(anchors[(1 * 3 + 1) * 2 + 1], [16, 16, 32, 32])  # cell (1,1), scale 16: centre (24, 24)
    np.testing.assert_allclose(anchors[(1 * 3 + 2) * 2 + 1], [16, 32, 32, 48])  # cell (1,2): centre (24, 40)


def encoder():
    # 64 px, stride 16: a 4x4 grid, two square anchors per cell (24 and 28 px)
    return RpnTargetEncoder(64, 16, [24, 28], [(1, 1)], DeltaCoder.keras_frcnn(4.0), samples=256)


def test_rpn_labels_forced_best_anchor_neutral_and_border():
    enc = encoder()
    gt = np.array([[16, 16, 40, 40]], np.float32)
    cls, regress = enc.encode(gt, np.array([False]), np.random.default_rng(0))
    assert cls.shape == (4, 4, 4) and regress.shape == (4, 4, 16)
    valid, positive = cls[..., :2], cls[..., 2:]
    # cell (1,1): the 28 px anchor [10,10,38,38] has IoU 484/876 = 0.55 < 0.7 but is the GT's best: positive;
    # the 24 px anchor [12,12,36,36] has IoU 400/752 = 0.53: neutral (neither valid nor positive)
    assert positive[1, 1, 1] == 1 and valid[1, 1, 1] == 1
    assert positive[1, 1, 0] == 0 and valid[1, 1, 0] == 0
    assert positive.sum() == 1
    # anchors crossing the border (every cell of row/col 0 and 3) are ignored
    assert not valid[0].any() and not valid[:, 0].any() and not valid[3].any() and not valid[:, 3].any()
    # the remaining inside anchors are negatives
    assert valid.sum() == 1 + (2 * 2 * 2 - 2)
    # keras-frcnn regression: (tx, ty, tw, th) * 4 = ((28-24)/28, (28-24)/28, log(24/28), log(24/28)) * 4
    t = 4 * np.array([4 / 28, 4 / 28, np.log(24 / 28), np.log(24 / 28)])
    np.testing.assert_allclose(regress[1, 1, 4:8], 1.0)  # mask of anchor 1
    np.testing.assert_allclose(regress[1, 1, 8 + 4 : 8 + 8], t, rtol=1e-5)
    assert regress[..., :8].sum() == 4


def test_rpn_sampling_caps_positives_and_total():
    enc = RpnTargetEncoder(256, 16, [16], [(1, 1)], DeltaCoder.keras_frcnn(4.0), samples=32)
    boxes = grid_anchors((16, 16), 16, [16], [(1, 1)])[20:220:3]  # many exact matches: many positives
    cls, _ = enc.encode(boxes, np.zeros(len(boxes), bool), np.random.default_rng(1))
    assert cls[..., 1:].sum() == 16  # at most half of the 32 samples positive
    assert cls[..., :1].sum() == 32


def test_crowd_regions_are_not_negatives_and_not_targets():
    enc = encoder()
    crowd = np.array([[16, 16, 48, 48]], np.float32)
    cls, _ = enc.encode(crowd, np.array([True]), np.random.default_rng(0))
    assert cls[..., 2:].sum() == 0
    assert cls[1, 1, :2].sum() == 0 and cls[2, 2, :2].sum() == 0  # overlap the crowd box: ignored
