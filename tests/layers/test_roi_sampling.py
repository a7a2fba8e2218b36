"""Faster R-CNN's in-graph ROI sampler on hand-computed cases."""

import numpy as np

from detectlab.box_coding import DeltaCoder
from detectlab.layers.roi_sampling import RoiSampler

CODER = DeltaCoder.keras_frcnn((8, 8, 4, 4))


def one_image():
    gt = np.zeros((1, 5, 4), np.float32)
    gt[0, 0] = [0.2, 0.2, 0.6, 0.6]
    ids = np.full((1, 5), -1, np.int32)
    ids[0, 0] = 2
    proposals = np.zeros((1, 6, 4), np.float32)
    proposals[0, 0] = [0.2, 0.2, 0.6, 0.6]  # IoU 1: foreground
    proposals[0, 1] = [0.2, 0.4, 0.6, 0.8]  # IoU 0.08/0.24 = 1/3: background
    proposals[0, 2] = [0.55, 0.55, 0.95, 0.95]  # IoU 0.0025/0.3175 < 0.1: dropped
    proposals[0, 3] = [0.2, 0.2, 0.6, 0.6]  # past the count: not a proposal
    return proposals, np.array([3]), gt, ids


def test_thresholds_counts_and_targets():
    sampler = RoiSampler(num_classes=3, coder=CODER, num_rois=4, fg_iou=0.5, bg_low=0.1, add_gt=True)
    proposals, counts, gt, ids = one_image()
    batch = {k: v.numpy() for k, v in sampler(proposals, counts, gt, ids, np.int64([7])).items()}
    assert batch["rois"].shape == (1, 4, 4) and batch["classes"].shape == (1, 4, 4) and batch["regress"].shape == (1, 4, 24)
    assert batch["positives"] == 2 and batch["negatives"] == 2 and batch["unusable_images"] == 0
    labels = batch["classes"][0].argmax(-1)
    assert sorted(labels) == [2, 2, 3, 3]  # two of class 2 (proposal + GT), two background (class index 3)
    for roi, label, reg in zip(batch["rois"][0], labels, batch["regress"][0]):
        assert not np.allclose(roi, proposals[0, 2])
        if label == 2:
            np.testing.assert_allclose(roi, gt[0, 0])
            np.testing.assert_array_equal(reg[8:12], 1)  # class 2 slot
            assert reg[:8].sum() == 0 and reg[12:12 + 8].sum() == 0
            np.testing.assert_allclose(reg[12 + 8:12 + 12], 0, atol=1e-6)  # exact box: zero deltas
        else:
            np.testing.assert_allclose(roi, proposals[0, 1])  # the one background, drawn twice
            assert not reg.any()


def test_at_most_half_foreground_and_draws_depend_only_on_the_image_seed():
    sampler = RoiSampler(num_classes=1, coder=CODER, num_rois=4, add_gt=False)
    gt = np.float32([[[0.2, 0.2, 0.6, 0.6]]])
    shifts = np.linspace(-0.04, 0.04, 9, dtype=np.float32)
    fg = np.stack([gt[0, 0] + [s, 0, s, 0] for s in shifts])  # 9 foreground proposals
    bg = np.stack([gt[0, 0] + [0, 0.25 + s, 0, 0.25 + s] for s in shifts])  # 9 background
    proposals = np.concatenate([fg, bg])[None]
    ids = np.int32([[0]])
    out = sampler(proposals, np.array([18]), gt, ids, np.int64([11]))
    assert out["positives"] == 2 and out["negatives"] == 2
    rois = out["rois"].numpy()[0]
    assert len({tuple(r) for r in rois}) == 4  # drawn without replacement
    # the same image at another batch position, beside another image: the same ROIs
    twice = sampler(np.concatenate([proposals[:, ::-1], proposals]), np.array([18, 18]), np.concatenate([gt, gt]),
                    np.concatenate([ids, ids]), np.int64([5, 11]))
    np.testing.assert_array_equal(twice["rois"].numpy()[1], rois)
    other = sampler(proposals, np.array([18]), gt, ids, np.int64([12]))["rois"].numpy()[0]
    assert not np.array_equal(other, rois)


def test_images_without_usable_rois_are_counted_and_all_padding():
    sampler = RoiSampler(num_classes=2, coder=CODER, num_rois=4)
    gt = np.zeros((2, 3, 4), np.float32)
    ids = np.full((2, 3), -1, np.int32)
    proposals = np.tile(np.array([[[0.1, 0.1, 0.3, 0.3]]], np.float32), (2, 2, 1))
    batch = sampler(proposals, np.array([2, 2]), gt, ids, np.int64([1, 2]))
    assert batch["unusable_images"] == 2 and batch["positives"] == batch["negatives"] == 0
    assert not batch["classes"].numpy().any() and not batch["rois"].numpy().any()
    assert np.isfinite(batch["regress"].numpy()).all()
