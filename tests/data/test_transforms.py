import numpy as np

from detectlab.config import AugmentConfig
from detectlab.data.transforms import apply_pipeline, build_pipeline, letterbox
from detectlab.inference.predictor import unletterbox


def scene():
    image = np.zeros((60, 100, 3), np.uint8)
    boxes = np.array([[10, 20, 30, 60], [40, 70, 60, 100]], np.float32)
    masks = np.zeros((2, 60, 100), np.uint8)
    for m, (y1, x1, y2, x2) in zip(masks, boxes.astype(int)):
        m[y1:y2, x1:x2] = 1
    return image, boxes, masks


def test_letterbox_geometry_is_exact():
    image, boxes, masks = scene()
    out, kept_boxes, kept, out_masks, t = apply_pipeline(build_pipeline(50, None), image, boxes, masks, None)
    assert out.shape == (50, 50, 3)
    assert t == (0.5, 0.5, 10.0, 0.0)  # 100x60 -> 50x30, centred vertically
    np.testing.assert_allclose(kept_boxes, [[15, 10, 25, 30], [30, 35, 40, 50]])
    assert list(kept) == [0, 1]
    for m, (y1, x1, y2, x2) in zip(out_masks, kept_boxes.astype(int)):
        ys, xs = np.nonzero(m)
        assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == (y1, x1, y2, x2)
    assert (out[:10] == 128).all() and (out[40:] == 128).all()  # grey padding
    lb, t2 = letterbox(image, 50)
    assert t2 == t and lb.shape == out.shape
    np.testing.assert_allclose(unletterbox(kept_boxes, t, (60, 100)), boxes, atol=1e-4)


def test_augmentation_keeps_boxes_masks_and_transform_in_sync():
    image, boxes, masks = scene()
    pipeline = build_pipeline(64, AugmentConfig(hflip=0.5))
    for seed in range(20):
        out, b, kept, m, (sy, sx, ty, tx) = apply_pipeline(pipeline, image, boxes, masks, seed)
        assert out.shape == (64, 64, 3) and m.shape == (len(kept), 64, 64)
        expected = np.stack([boxes[kept, 0] * sy + ty, boxes[kept, 1] * sx + tx, boxes[kept, 2] * sy + ty, boxes[kept, 3] * sx + tx], 1)
        expected[:, [1, 3]] = np.sort(expected[:, [1, 3]], 1)  # a flip swaps x1 and x2
        np.testing.assert_allclose(b, np.clip(expected, 0, 64), atol=1e-3)
        for mask, box in zip(m, b):
            ys, xs = np.nonzero(mask)
            if len(ys):
                assert abs(ys.min() - box[0]) <= 1 and abs(xs.max() + 1 - box[3]) <= 1


def test_same_seed_same_result_different_seed_differs():
    image, boxes, _ = scene()
    image = (np.arange(60 * 100 * 3) % 251).astype(np.uint8).reshape(60, 100, 3)
    p = build_pipeline(64, AugmentConfig())
    a = apply_pipeline(p, image, boxes, None, 5)
    b = apply_pipeline(p, image, boxes, None, 5)
    c = apply_pipeline(p, image, boxes, None, 6)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
