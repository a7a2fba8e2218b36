import numpy as np

from detectlab.data.transforms import Sample
from detectlab.data.yolo_targets import YoloTargetEncoder

ANCHORS = [[10, 10], [20, 20], [40, 40], [60, 60], [80, 80], [100, 100]]
MASKS = [[3, 4, 5], [0, 1, 2]]  # output 0: stride 32 (2x2 at 64 px), output 1: stride 16 (4x4)


def encoder():
    return YoloTargetEncoder(ANCHORS, MASKS, num_classes=3, image_size=64, max_boxes=5)


def test_box_goes_to_best_anchor_and_its_cell():
    # y1 x1 y2 x2: centre (x=40, y=24), 20x20 -> anchor 1 (20x20) on output 1, slot 1
    t = encoder().encode(np.array([[14, 30, 34, 50]], np.float32), np.array([2]))
    assert t[0].shape == (2, 2, 3, 6) and t[1].shape == (4, 4, 3, 6)
    assert t[0].sum() == 0
    cell = t[1][1, 2, 1]  # row floor(24/16)=1, column floor(40/16)=2
    np.testing.assert_allclose(cell, [40 / 64, 24 / 64, 20 / 64, 20 / 64, 1, 2])
    assert t[1][..., 4].sum() == 1


def test_large_box_goes_to_coarse_output():
    t = encoder().encode(np.array([[2, 2, 62, 62]], np.float32), np.array([0]))  # 60x60 -> anchor 3
    np.testing.assert_allclose(t[0][1, 1, 0], [0.5, 0.5, 60 / 64, 60 / 64, 1, 0])


def test_box_centred_on_the_far_border_is_clipped_into_the_last_cell():
    # centre exactly at (64, 64): floor(1.0 * grid) = grid is outside; the reference crashed here
    t = encoder().encode(np.array([[48, 48, 80, 80]], np.float32), np.array([1]))  # 32x32 -> anchor 2
    np.testing.assert_allclose(t[1][3, 3, 2], [1.0, 1.0, 0.5, 0.5, 1, 1])


def test_later_box_overwrites_same_slot_and_empty_boxes_are_ignored():
    boxes = np.array([[0, 0, 20, 20], [1, 1, 21, 21], [5, 5, 5, 9]], np.float32)
    t = encoder().encode(boxes, np.array([0, 1, 2]))
    assert t[1][..., 4].sum() == 1
    assert t[1][0, 0, 1, 5] == 1  # the second box's class


def test_batch_excludes_crowd_and_pads_gt_boxes():
    s = Sample(
        image=np.zeros((64, 64, 3), np.uint8),
        boxes=np.array([[14, 30, 34, 50], [0, 0, 64, 64]], np.float32),
        class_ids=np.array([2, 0], np.int32),
        iscrowd=np.array([False, True]),
        masks=None, image_id=1, transform=(1, 1, 0, 0), original_size=(64, 64),
    )
    x, y = encoder()([s, s])
    assert x.shape == (2, 64, 64, 3) and x.dtype == np.uint8
    assert y["targets_1"][..., 4].sum() == 2 and y["targets_0"][..., 4].sum() == 0
    assert y["gt_boxes"].shape == (2, 5, 4)
    np.testing.assert_allclose(y["gt_boxes"][0, 0], [40 / 64, 24 / 64, 20 / 64, 20 / 64])
    assert not y["gt_boxes"][0, 1:].any()


def test_match_ratio_adds_every_anchor_within_the_ratio_without_overwriting_best_ones():
    enc = YoloTargetEncoder(ANCHORS, MASKS, num_classes=3, image_size=64, max_boxes=5, match_ratio=4.0)
    # 20x20 at (40, 24): best anchor 1; within 4x: 10 (2x), 40 (2x), 60 (3x), 80 (4x: not within)
    t = enc.encode(np.array([[14, 30, 34, 50]], np.float32), np.array([2]))
    assert t[1][1, 2, :, 4].tolist() == [1, 1, 1]  # anchors 0, 1, 2 at row 1, column 2 of stride 16
    assert t[0][0, 1, :, 4].tolist() == [1, 0, 0]  # anchor 3 (60x60) at row 0, column 1 of stride 32
    # a second box whose best anchor is 0, in the same cell: it takes slot 0; box 1 keeps slot 1
    t = enc.encode(np.array([[14, 30, 34, 50], [20, 36, 28, 44]], np.float32), np.array([2, 0]))
    assert t[1][1, 2, 0, 5] == 0 and t[1][1, 2, 1, 5] == 2
