"""Mosaic, MixUp and the random affine: hand-placed geometry, every box kept (clipped; cut-off
ones dropped and counted), masks aligned with boxes, and each image the anchor once per epoch."""

import dataclasses

import numpy as np
import pytest

from detectlab.config import AugmentConfig
from detectlab.data.coco import load_coco
from detectlab.data.generator import DetectionBatches
from detectlab.data.mosaic import Instances, MosaicAugment, affine_matrix, compose, mixup, mosaic_placements
from detectlab.data.transforms import build_pipeline

S = 64


def part(boxes, h=32, w=64, masks=False, value=0):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    image = np.full((h, w, 3), value, np.uint8)
    m = None
    if masks:
        m = np.zeros((len(boxes), h, w), np.uint8)
        for k, (y1, x1, y2, x2) in enumerate(boxes.astype(int)):
            m[k, y1:y2, x1:x2] = 1
    return Instances(image, boxes, np.arange(len(boxes), dtype=np.int32), np.zeros(len(boxes), bool), m)


def test_four_images_around_the_centre_at_half_scale_keep_every_box():
    # four 32x64 images (letterbox factor 1) around the canvas centre (64, 64); scale 0.5 maps
    # the whole 128 px canvas onto the 64 px input, so nothing is cut off
    parts = [part([[4, 8, 12, 24]], value=10 * (k + 1)) for k in range(4)]
    placements = mosaic_placements([p.image.shape[:2] for p in parts], S, (64.0, 64.0))
    out = compose(parts, [affine_matrix(S, 2 * S, scale=0.5) @ m for m in placements], S)
    # tile origins on the canvas (x, y): (0, 32), (64, 32), (0, 64), (64, 64); then halved
    origins = [(0, 32), (64, 32), (0, 64), (64, 64)]
    expected = [[(oy + 4) / 2, (ox + 8) / 2, (oy + 12) / 2, (ox + 24) / 2] for ox, oy in origins]
    np.testing.assert_allclose(out.boxes, expected, atol=1e-4)
    assert out.dropped == 0 and out.image.shape == (S, S, 3)
    # each tile's pixels land in its quadrant; above and below the tiles is the grey canvas
    assert out.image[20, 16, 0] == 10 and out.image[20, 48, 0] == 20 and out.image[40, 16, 0] == 30 and out.image[40, 48, 0] == 40
    assert out.image[4, 4, 0] == 128 and out.image[60, 60, 0] == 128


def test_boxes_cut_off_by_the_input_are_clipped_or_dropped_and_counted():
    # one 64x64 image letterboxed onto the 64 px input and shifted left by 16 px
    boxes = [[10, 20, 30, 40],  # stays whole
             [10, 8, 30, 30],  # x 8-30 -> -8-14: clipped to 0-14, 64% visible: kept
             [40, 2, 50, 18],  # x 2-18 -> -14-2: 2 px wide but 12% visible... kept at the limit
             [40, 0, 50, 17],  # x 0-17 -> -16-1: 1 px wide: dropped and counted
             [52, 0, 60, 10]]  # wholly outside: not in view, not counted
    single = part(boxes, h=64, w=64)
    matrix = affine_matrix(S, S, translate=(-0.25, 0.0))
    out = compose([single], [matrix], S)
    np.testing.assert_allclose(out.boxes, [[10, 4, 30, 24], [10, 0, 30, 14], [40, 0, 50, 2]], atol=1e-4)
    np.testing.assert_array_equal(out.class_ids, [0, 1, 2])
    assert out.dropped == 1


def test_rotated_masks_stay_aligned_with_their_boxes():
    single = part([[8, 8, 40, 24], [30, 30, 60, 60]], h=64, w=64, masks=True)
    out = compose([single], [affine_matrix(S, S, degrees=30, scale=0.8)], S)
    assert len(out.boxes) == 2 and out.masks.shape == (2, S, S)
    for box, mask in zip(out.boxes, out.masks):
        rows, cols = np.nonzero(mask)
        np.testing.assert_array_equal(box, [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
        assert mask.sum() == pytest.approx((box[2] - box[0]) * (box[3] - box[1]) / 2, rel=0.5)  # a rotated rectangle


def test_mixup_blends_two_samples_and_keeps_both_sets_of_instances():
    a, b = part([[0, 0, 4, 4]], value=200), part([[8, 8, 16, 16], [1, 1, 3, 3]], value=100)
    out = mixup(a, b, 0.25)
    assert out.image[0, 0, 0] == 125 and len(out.boxes) == 3 and list(out.class_ids) == [0, 0, 1]


@pytest.fixture
def augment():
    return dataclasses.replace(AugmentConfig(), mosaic=1.0, mixup=0.5, degrees=10.0, translate=0.1, scale=(0.5, 1.5))


def batches(shapes_dir, augment, **kwargs):
    dataset = load_coco(shapes_dir / "instances_train.json")
    return DetectionBatches(dataset, build_pipeline(S, augment, geometry=False), lambda samples: samples, 8, seed=3,
                            workers=0, with_masks=True, composer=MosaicAugment(augment, len(dataset)), image_size=S,
                            **kwargs)


def test_each_image_is_the_anchor_once_per_epoch_with_masks_aligned(shapes_dir, augment):
    gen = batches(shapes_dir, augment)
    samples = [s for i in range(len(gen)) for s in gen[i]]
    ids = [s.image_id for s in samples]
    assert sorted(ids) == sorted(r.image_id for r in gen.dataset.records)
    per_image = np.mean([r.num_instances for r in gen.dataset.records])
    assert np.mean([len(s.boxes) for s in samples]) > 2 * per_image  # four images (and MixUp) per sample
    for s in samples:
        assert s.image.shape == (S, S, 3) and len(s.masks) == len(s.boxes) == len(s.class_ids)
        for box, mask in zip(s.boxes, s.masks):
            rows, cols = np.nonzero(mask)
            np.testing.assert_allclose(box, [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], atol=1.0)
    again = batches(shapes_dir, augment)
    np.testing.assert_array_equal(again[1][0].image, gen[1][0].image)  # seeded: the same sample again


def test_the_last_epochs_close_the_mosaic(shapes_dir, augment):
    gen = batches(shapes_dir, augment, mosaic_epochs=1)
    gen.set_epoch(1)
    for s in gen[0]:
        record = next(r for r in gen.dataset.records if r.image_id == s.image_id)
        assert len(s.boxes) <= record.num_instances  # one image, no MixUp


def test_worker_processes_compose_the_same_samples_each_anchor_once(shapes_dir, augment):
    import keras

    def encoder(samples):  # the anchor's id and a fingerprint of the composed pixels and boxes
        rows = [[s.image_id, float(s.image.astype(np.float64).mean()), float(np.sum(s.boxes))] for s in samples]
        return np.array(rows, np.float32), np.zeros((len(rows), 1), np.float32)

    def epoch(gen):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Identity()])
        return model.predict(gen, verbose=0)

    dataset = load_coco(shapes_dir / "instances_train.json")
    make = lambda **kw: DetectionBatches(dataset, build_pipeline(S, augment, geometry=False), encoder, 8, seed=3,  # noqa: E731
                                         with_masks=True, composer=MosaicAugment(augment, len(dataset)), image_size=S, **kw)
    parallel = epoch(make(workers=2, use_multiprocessing=True))
    assert sorted(parallel[:, 0].astype(int)) == sorted(r.image_id for r in dataset.records)
    np.testing.assert_allclose(parallel, epoch(make(workers=0)), rtol=1e-6)
