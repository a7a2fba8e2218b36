"""Mask R-CNN in-graph layers against numpy references and hand-computed cases."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from detectlab.anchor_pyramid import anchors_per_level, pyramid_anchors  # noqa: E402
from detectlab.box_coding import DeltaCoder  # noqa: E402
from detectlab.boxes import iou_matrix  # noqa: E402
from detectlab.layers.detection_targets import DetectionTargets  # noqa: E402
from detectlab.layers.fpn_proposals import FpnProposals  # noqa: E402
from detectlab.layers.mrcnn_detections import MaskRcnnDetections  # noqa: E402
from detectlab.layers.pyramid_roi_align import PyramidRoiAlign, roi_levels  # noqa: E402

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
CODER = DeltaCoder.matterport(STD)  # what the layers are given


# ---------------------------------------------------------------- numpy references

def encode_deltas(boxes, gt, std):
    """matterport's ``box_refinement``, written out: ``(dy, dx, dh, dw) / std``."""
    h, w = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    gh, gw = gt[..., 2] - gt[..., 0], gt[..., 3] - gt[..., 1]
    dy = (gt[..., 0] + 0.5 * gh - boxes[..., 0] - 0.5 * h) / h
    dx = (gt[..., 1] + 0.5 * gw - boxes[..., 1] - 0.5 * w) / w
    return np.stack([dy, dx, np.log(gh / h), np.log(gw / w)], -1) / std


def decode_deltas(boxes, deltas, std):
    """matterport's ``apply_box_deltas``: the inverse of :func:`encode_deltas`."""
    deltas = deltas * std
    h, w = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    cy = boxes[..., 0] + 0.5 * h + deltas[..., 0] * h
    cx = boxes[..., 1] + 0.5 * w + deltas[..., 1] * w
    h, w = h * np.exp(deltas[..., 2]), w * np.exp(deltas[..., 3])
    return np.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], -1)


def np_crop_and_resize(image, box, size):
    """``tf.image.crop_and_resize`` for one box: ``image (H, W, C)``, normalised ``box`` ->
    ``(size, size, C)``; samples at ``y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (size - 1)``."""
    h, w, c = image.shape
    y1, x1, y2, x2 = (float(v) for v in box)
    out = np.zeros((size, size, c), np.float64)
    for i in range(size):
        y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (size - 1)
        if y < 0 or y > h - 1:
            continue
        for j in range(size):
            x = x1 * (w - 1) + j * (x2 - x1) * (w - 1) / (size - 1)
            if x < 0 or x > w - 1:
                continue
            t, l = int(np.floor(y)), int(np.floor(x))
            b, r = min(t + 1, h - 1), min(l + 1, w - 1)
            dy, dx = y - t, x - l
            top = image[t, l] * (1 - dx) + image[t, r] * dx
            bottom = image[b, l] * (1 - dx) + image[b, r] * dx
            out[i, j] = top * (1 - dy) + bottom * dy
    return out


def np_level(box, image_size):
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-12)
    return int(np.clip(np.round(4 + np.log2(np.sqrt(area) * image_size / 224)), 2, 5))


def np_nms(boxes, scores, threshold):
    """Greedy NMS over score-sorted boxes; returns kept indices. As ``combined_non_max_suppression``
    (used by ``top_proposals``): a kept box suppresses every lower-scoring one it overlaps by the
    threshold or more (ties do not occur here); all-zero boxes (none here) are skipped."""
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if not boxes[i].any():
            continue
        if all(iou_matrix(boxes[i], boxes[j])[0, 0] < threshold for j in keep):
            keep.append(i)
    return keep


def np_proposals(anchors, scores, deltas, pre_nms, threshold, k):
    boxes = np.clip(decode_deltas(anchors, deltas, STD), 0, 1)
    top = np.argsort(-scores, kind="stable")[:pre_nms]
    kept = [top[i] for i in np_nms(boxes[top], scores[top], threshold)][:k]
    out = np.zeros((k, 4), np.float32)
    out[: len(kept)] = boxes[kept]
    return out, len(kept)


def roundtrip(model, path, inputs):
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    return model(inputs), loaded(inputs)


# ---------------------------------------------------------------- anchors and proposals

def test_pyramid_anchors_sizes_and_order():
    pixels, norm = pyramid_anchors(64, strides=[16, 32], scales=[8, 16], ratios=[0.5, 1, 2])
    assert anchors_per_level(64, [16, 32], 3) == [48, 12] and pixels.shape == (60, 4)
    r = np.sqrt(2.0)
    # level 0, cell (0, 0), ratio 0.5 (width / height): tall, centred on (0, 0) as in matterport
    np.testing.assert_allclose(pixels[0], [-4 * r, -2 * r, 4 * r, 2 * r], rtol=1e-6)
    # level 0, cell (row 1, col 2), ratio 2: wide, centred on (16, 32)
    np.testing.assert_allclose(pixels[(1 * 4 + 2) * 3 + 2], [16 - 2 * r, 32 - 4 * r, 16 + 2 * r, 32 + 4 * r], rtol=1e-6)
    # level 1 (after 48 anchors), cell (1, 1), ratio 1
    np.testing.assert_allclose(pixels[48 + (1 * 2 + 1) * 3 + 1], [24, 24, 40, 40])
    np.testing.assert_allclose(norm, pixels / 64, rtol=1e-6)
    centred, _ = pyramid_anchors(64, strides=[16, 32], scales=[8, 16], ratios=[0.5, 1, 2], offset=0.5)
    np.testing.assert_allclose(centred[48 + 4], [8, 40, 24, 56])  # level 1, cell (row 0, col 1), ratio 1: centre (16, 48)
    assert len(pyramid_anchors(1024)[0]) == 261888  # matterport's count for 1024 px


@pytest.mark.parametrize("training, k", [(True, 12), (False, 8)])
def test_fpn_proposals_match_numpy_decode_clip_topk_nms(training, k):
    config = dict(strides=[32, 64], scales=[32, 64], ratios=[0.5, 1, 2])
    layer = FpnProposals(128, **config, coder=CODER, pre_nms=30, nms_threshold=0.4, proposals_training=12, proposals_inference=8)
    anchors = pyramid_anchors(128, **config)[1]
    assert layer.num_anchors == 4 * 4 * 3 + 2 * 2 * 3
    rng = np.random.default_rng(3)
    scores = rng.random((2, 60)).astype(np.float32)
    scores[:, 15:21] += 1  # the 3 ratios of cells 5 and 6 of level 0 lead: they overlap (IoU ~0.55)
    deltas = (rng.normal(size=(2, 60, 4)) * 0.5).astype(np.float32)
    proposals, counts = layer(scores, deltas, training=training)
    assert proposals.shape == (2, k, 4) and counts.dtype == tf.int32
    for b in range(2):
        expected, count = np_proposals(anchors, scores[b], deltas[b], 30, 0.4, k)
        assert int(counts[b]) == count
        np.testing.assert_allclose(proposals[b].numpy(), expected, atol=1e-6)
        # the case exercises NMS (and the order of the kept boxes)
        assert not np.allclose(expected, np_proposals(anchors, scores[b], deltas[b], 30, 1.01, k)[0])


# ---------------------------------------------------------------- pyramid ROI align

def test_roi_levels_on_hand_picked_boxes():
    sides = [(224, 224), (112, 112), (56, 56), (448, 448), (16, 16), (1024, 1024), (224, 56), (158, 158), (159, 159)]
    boxes = np.array([[100, 100, 100 + h, 100 + w] for h, w in sides] + [[0, 0, 0, 0]], np.float32) / 1024
    #   224 -> 4; 112 -> 3; 56 -> 2; 448 -> 5; tiny -> 2 (clipped); whole image -> 5 (clipped);
    #   224x56 has sqrt(area) 112 -> 3; 158 -> 3.496 -> 3, 159 -> 3.505 -> 4; padding -> 2
    assert roi_levels(boxes, 1024).numpy().tolist() == [4, 3, 2, 5, 2, 5, 3, 3, 4, 2]


def pyramid_case(seed=0):
    rng = np.random.default_rng(seed)
    sizes = [12, 9, 6, 4]  # distinct sizes: a crop from the wrong level cannot match
    features = [rng.normal(size=(2, s, s, 3)).astype(np.float32) for s in sizes]
    px = [(0, 0, 230, 230), (500, 100, 560, 150), (10, 20, 900, 1000), (300, 300, 420, 420), (0, 0, 0, 0),
          (600, 600, 830, 820), (5, 5, 450, 480), (40, 700, 100, 760), (200, 100, 330, 230), (0, 0, 0, 0)]
    boxes = (np.array(px, np.float32) / 1024).reshape(2, 5, 4)
    return boxes, features


def test_pyramid_roi_align_matches_numpy_bilinear_per_level_in_roi_order():
    boxes, features = pyramid_case()
    out = PyramidRoiAlign(pool_size=3, image_size=1024)(boxes, features)
    assert out.shape == (2, 5, 3, 3, 3) and out.dtype == tf.float32
    levels = set()
    for b in range(2):
        for r in range(5):
            level = np_level(boxes[b, r], 1024)
            levels.add(level)
            expected = np_crop_and_resize(features[level - 2][b], boxes[b, r], 3)
            np.testing.assert_allclose(out[b, r].numpy(), expected, atol=1e-5, err_msg=f"roi {b},{r} level {level}")
    assert levels == {2, 3, 4, 5}


def test_pyramid_roi_align_gradient_sends_each_crop_back_to_its_level():
    # d(sum(weights * crops)) / d(features): each ROI's weights flow to the level it was cropped
    # from, as the gradient of per-ROI crop_and_resize calls does (the layer reorders its crops
    # with an inverse-permutation gradient)
    boxes, features = pyramid_case()
    weights = tf.constant(np.random.default_rng(5).normal(size=(2, 5, 3, 3, 3)).astype(np.float32))
    features = [tf.constant(f) for f in features]
    with tf.GradientTape() as tape:
        tape.watch(features)
        loss = tf.reduce_sum(weights * PyramidRoiAlign(pool_size=3, image_size=1024)(boxes, features))
    grads = tape.gradient(loss, features)
    with tf.GradientTape() as tape:
        tape.watch(features)
        loss = 0.0
        for b in range(2):
            for r in range(5):
                level = np_level(boxes[b, r], 1024) - 2
                crop = tf.image.crop_and_resize(features[level], boxes[b, r][None], [b], [3, 3])
                loss += tf.reduce_sum(weights[b, r] * crop[0])
    for got, want in zip(grads, tape.gradient(loss, features)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_pyramid_roi_align_infers_image_size_from_p2():
    boxes = np.array([[[0, 0, 0.22, 0.22], [0.5, 0.5, 0.6, 0.6]]], np.float32)
    rng = np.random.default_rng(1)
    features = [rng.normal(size=(1, s, s, 2)).astype(np.float32) for s in (64, 32, 16, 8)]  # a 256 px input
    inferred = PyramidRoiAlign(pool_size=2)(boxes, features)
    np.testing.assert_allclose(inferred.numpy(), PyramidRoiAlign(pool_size=2, image_size=256)(boxes, features).numpy())
    assert not np.allclose(inferred.numpy(), PyramidRoiAlign(pool_size=2, image_size=1024)(boxes, features).numpy())


def test_pyramid_roi_align_under_mixed_bfloat16_keeps_float32_boxes():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    boxes, features = pyramid_case(2)
    bf16 = [tf.constant(f, tf.bfloat16) for f in features]
    layer = PyramidRoiAlign(pool_size=3, image_size=1024)
    out = layer(tf.constant(boxes), bf16)
    assert out.dtype == tf.bfloat16 and out.shape == (2, 5, 3, 3, 3)
    # same as cropping the bf16 features in float32 at the float32 boxes (boxes not autocast)
    rounded = [tf.cast(f, tf.float32) for f in bf16]
    expected = tf.cast(PyramidRoiAlign(pool_size=3, image_size=1024, dtype="float32")(boxes, rounded), tf.bfloat16)
    np.testing.assert_array_equal(out.numpy().astype(np.float32), expected.numpy().astype(np.float32))


# ---------------------------------------------------------------- detection targets

GT0 = [0.1, 0.1, 0.5, 0.5]
PROPOSALS0 = np.array([
    GT0,  # 0: IoU 1 -> positive candidate
    [0.1, 0.1, 0.5, 0.45],  # 1: IoU 0.875 -> positive candidate
    [0.1, 0.15, 0.5, 0.5],  # 2: IoU 0.875 -> positive candidate
    [0.6, 0.6, 0.9, 0.9],  # 3: the crowd box: never negative
    [0.55, 0.55, 0.65, 0.65],  # 4: IoU 0.026 with the crowd box (>= 0.001): never negative
    [0.0, 0.6, 0.3, 0.9],  # 5: negative
    [0.3, 0.3, 0.55, 0.55],  # 6: IoU 0.22 with GT 0: negative
    [0.0, 0.0, 0.0, 0.0],  # 7: padding
    [0.7, 0.0, 0.95, 0.3],  # 8: negative
], np.float32)
NEGATIVES0 = PROPOSALS0[[5, 6, 8]]
MASK_ONES = {0: 14, 1: 16, 2: 12}  # positive proposal -> number of leading one-columns in its 28x28 target


def targets_case():
    """Image 0: as above. Image 1: one positive (class 2) and 4 negatives. Image 2: no GT."""
    proposals = np.zeros((3, 9, 4), np.float32)
    proposals[0] = PROPOSALS0
    proposals[1, :5] = [[0.5, 0.5, 0.9, 0.85], [0, 0, 0.2, 0.2], [0, 0.3, 0.2, 0.5], [0.2, 0, 0.4, 0.2], [0, 0.6, 0.2, 0.8]]
    proposals[2, :3] = [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.3, 0.3], [0.5, 0.5, 0.6, 0.6]]
    ids = np.array([[1, -1, 0], [0, 2, 0], [0, 0, 0]], np.int32)
    gt = np.zeros((3, 3, 4), np.float32)
    gt[0, 0], gt[0, 1], gt[1, 1] = GT0, [0.6, 0.6, 0.9, 0.9], [0.5, 0.5, 0.9, 0.9]
    masks = np.zeros((3, 3, 4, 4), np.float32)
    masks[0, 0, :, :2] = 1  # GT 0: left half
    masks[1, 1] = [[0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0], [1, 1, 0, 1]]
    return proposals, ids, gt, masks


def find_row(rows, candidates):
    matches = [i for i, c in enumerate(candidates) if np.allclose(rows, c)]
    assert len(matches) == 1, (rows, candidates)
    return matches[0]


def test_detection_targets_counts_crowd_deltas_and_masks():
    proposals, ids, gt, masks = targets_case()
    layer = DetectionTargets(coder=CODER, train_rois=6, roi_positive_ratio=0.33)
    assert layer.max_positives == 2
    rois, classes, deltas, target_masks = (t.numpy() for t in layer(proposals, ids, gt, masks))
    assert rois.shape == (3, 6, 4) and classes.shape == (3, 6) and deltas.shape == (3, 6, 4)
    assert target_masks.shape == (3, 6, 28, 28)

    # image 0: 3 positive candidates capped to 2; int(2 / 0.33) - 2 = 4 negatives wanted, 3 usable
    assert classes[0].tolist() == [1, 1, 0, 0, 0, 0]
    positives = [find_row(r, PROPOSALS0[:3]) for r in rois[0, :2]]
    assert len(set(positives)) == 2
    assert sorted(find_row(r, NEGATIVES0) for r in rois[0, 2:5]) == [0, 1, 2]  # crowd-touching 3, 4 never
    np.testing.assert_array_equal(rois[0, 5], 0)
    for row, p in enumerate(positives):
        np.testing.assert_allclose(deltas[0, row], encode_deltas(PROPOSALS0[p], np.array(GT0), STD), atol=1e-5)
        # the left-half mini-mask seen through the ROI, bilinear on the 4x4 grid then rounded
        expected = np.zeros((28, 28), np.float32)
        expected[:, : MASK_ONES[p]] = 1
        np.testing.assert_array_equal(target_masks[0, row], expected)
    if 1 in positives:  # hand value: (dy, dx, dh, dw) / std for proposal 1
        row = positives.index(1)
        np.testing.assert_allclose(deltas[0, row], [0, 0.025 / 0.35 / 0.1, 0, np.log(0.4 / 0.35) / 0.2], atol=1e-5)
    np.testing.assert_array_equal(deltas[0, 2:], 0)
    np.testing.assert_array_equal(target_masks[0, 2:], 0)

    # image 1: one positive of class 2 -> int(1 / 0.33) - 1 = 2 negatives, 3 padding rows
    assert classes[1].tolist() == [2, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(rois[1, 0], proposals[1, 0])
    assert {find_row(r, proposals[1, 1:5]) for r in rois[1, 1:3]} <= {0, 1, 2, 3}
    np.testing.assert_array_equal(rois[1, 3:], 0)
    frame = [0, 0, 1, 0.875]  # the ROI in the GT box's frame
    expected = np.round(np_crop_and_resize(masks[1, 1][..., None], frame, 28)[..., 0])
    np.testing.assert_array_equal(target_masks[1, 0], expected)

    # image 2: no GT -> no positives, and (matterport) no negatives either
    assert not classes[2].any() and not rois[2].any()


def test_detection_targets_samples_random_positive_subsets_drawn_from_the_image_seed():
    proposals, ids, gt, masks = targets_case()
    layer = DetectionTargets(coder=CODER, train_rois=6, roi_positive_ratio=0.33)
    seen = set()
    for seed in range(20):
        rois = layer(proposals[:1], ids[:1], gt[:1], masks[:1], np.int64([seed]))[0].numpy()
        seen |= {find_row(r, PROPOSALS0[:3]) for r in rois[0, :2]}
    assert seen == {0, 1, 2}
    # the same seed gives the same ROIs, also with the image at another place in the batch
    once = layer(proposals[:1], ids[:1], gt[:1], masks[:1], np.int64([3]))[0].numpy()[0]
    again = layer(proposals[[1, 0]], ids[[1, 0]], gt[[1, 0]], masks[[1, 0]], np.int64([9, 3]))[0].numpy()[1]
    np.testing.assert_array_equal(again, once)


def test_detection_targets_can_add_gt_boxes_as_proposals():
    proposals = np.array([[[0.0, 0.6, 0.3, 0.9]]], np.float32)  # one negative, no positive
    ids = np.array([[3]], np.int32)
    gt = np.array([[GT0]], np.float32)
    masks = np.ones((1, 1, 4, 4), np.float32)
    assert not DetectionTargets(coder=CODER, train_rois=4)(proposals, ids, gt, masks)[1].numpy().any()
    rois, classes, deltas, target_masks = DetectionTargets(coder=CODER, train_rois=4, add_gt_as_proposals=True)(proposals, ids, gt, masks)
    assert classes.numpy().tolist() == [[3, 0, 0, 0]]  # the GT box itself, then int(1/0.33) - 1 = 2 wanted, 1 negative
    np.testing.assert_allclose(rois[0, :2].numpy(), [GT0, proposals[0, 0]])
    np.testing.assert_allclose(deltas[0, 0].numpy(), 0, atol=1e-6)
    np.testing.assert_array_equal(target_masks[0, 0].numpy(), 1)


# ---------------------------------------------------------------- detections

def detections_case():
    rois = np.array([[[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.52], [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9],
                      [0.6, 0.6, 0.9, 0.9], [0.7, 0.7, 0.95, 0.95], [0, 0, 0, 0]]], np.float32)
    probs = np.array([[[0.1, 0.9, 0.0],  # 0: class 1, 0.9
                       [0.2, 0.8, 0.0],  # 1: class 1, 0.8, IoU 0.78 with box 0's refined box: suppressed
                       [0.05, 0.15, 0.8],  # 2: class 2, 0.8: other class, kept
                       [0.9, 0.05, 0.05],  # 3: background: dropped
                       [0.35, 0.0, 0.65],  # 4: below 0.7: dropped
                       [0.3, 0.7, 0.0],  # 5: exactly 0.7: kept, box grows past the image: clipped
                       [0.0, 1.0, 0.0]]], np.float32)  # 6: padding ROI: dropped
    deltas = np.full((1, 7, 3, 4), 3.0, np.float32)  # every slot but the arg-max class's moves the box far
    deltas[0, 1, 1] = deltas[0, 2, 2] = 0
    deltas[0, 0, 1] = [0.1 / 0.1, 0, 0, 0]  # dy = 0.1 (divided by its std) -> shift down by 0.04
    deltas[0, 5, 1] = [0, 0, np.log(2) / 0.2, 0]  # height doubled
    return rois, probs, deltas


def test_mrcnn_detections_drop_background_threshold_and_nms():
    rois, probs, deltas = detections_case()
    boxes, class_ids, scores, valid = MaskRcnnDetections(coder=CODER, max_detections=4)(rois, probs, deltas)
    assert int(valid[0]) == 3 and class_ids.dtype == tf.int32
    assert class_ids.numpy().tolist() == [[1, 2, 1, 0]]
    np.testing.assert_allclose(scores.numpy(), [[0.9, 0.8, 0.7, 0.0]], atol=1e-6)
    np.testing.assert_allclose(boxes[0].numpy(), [[0.14, 0.1, 0.54, 0.5], [0.1, 0.1, 0.5, 0.5],
                                                  [0.575, 0.7, 1.0, 0.95], [0, 0, 0, 0]], atol=1e-5)
    boxes, class_ids, scores, valid = MaskRcnnDetections(coder=CODER, max_detections=2)(rois, probs, deltas)
    assert int(valid[0]) == 2 and class_ids.numpy().tolist() == [[1, 2]]
    # a looser NMS keeps box 1 too
    _, class_ids, _, valid = MaskRcnnDetections(coder=CODER, max_detections=4, nms_threshold=0.8)(rois, probs, deltas)
    assert int(valid[0]) == 4 and sorted(class_ids.numpy()[0].tolist()) == [1, 1, 1, 2]


# ---------------------------------------------------------------- serialisation

def test_layers_save_and_reload_in_safe_mode(tmp_path):
    # pyramid ROI align
    boxes, features = pyramid_case()
    box_in = keras.Input((5, 4))
    feature_in = [keras.Input(f.shape[1:]) for f in features]
    out = PyramidRoiAlign(pool_size=3, image_size=1024)(box_in, feature_in)
    assert out.shape == (None, 5, 3, 3, 3)
    a, b = roundtrip(keras.Model([box_in, *feature_in], out), tmp_path / "align.keras", [boxes, *features])
    np.testing.assert_array_equal(a.numpy(), b.numpy())

    # FPN proposals (inference count)
    layer = FpnProposals(64, coder=CODER, strides=[32, 64], scales=[32, 64], pre_nms=10, proposals_training=6, proposals_inference=4)
    score_in, delta_in = keras.Input((15,)), keras.Input((15, 4))
    model = keras.Model([score_in, delta_in], layer(score_in, delta_in))
    rng = np.random.default_rng(0)
    inputs = [rng.random((1, 15)).astype(np.float32), (rng.normal(size=(1, 15, 4)) * 0.1).astype(np.float32)]
    a, b = roundtrip(model, tmp_path / "proposals.keras", inputs)
    assert a[0].shape == (1, 4, 4) and model(inputs, training=True)[0].shape == (1, 6, 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())

    # detection targets (a case without random choices: one positive, one usable negative)
    proposals = np.array([[[0.1, 0.1, 0.5, 0.45], [0.0, 0.6, 0.3, 0.9], [0, 0, 0, 0]]], np.float32)
    ids, gt = np.array([[1, 0]], np.int32), np.array([[GT0, [0, 0, 0, 0]]], np.float32)
    masks = np.zeros((1, 2, 4, 4), np.float32)
    masks[0, 0, :, :2] = 1
    ins = [keras.Input((3, 4)), keras.Input((2,), dtype="int32"), keras.Input((2, 4)), keras.Input((2, 4, 4))]
    outs = DetectionTargets(coder=CODER, train_rois=4)(*ins)
    # the ROI axis stays dynamic, so heads built on it also take proposals or detections
    assert [tuple(o.shape) for o in outs] == [(None, None, 4), (None, None), (None, None, 4), (None, None, 28, 28)]
    a, b = roundtrip(keras.Model(ins, outs), tmp_path / "targets.keras", [proposals, ids, gt, masks])
    assert a[1].numpy().tolist() == [[1, 0, 0, 0]]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())

    # final detections
    rois, probs, deltas = detections_case()
    ins = [keras.Input((7, 4)), keras.Input((7, 3)), keras.Input((7, 3, 4))]
    model = keras.Model(ins, MaskRcnnDetections(coder=CODER, max_detections=4)(*ins))
    a, b = roundtrip(model, tmp_path / "detections.keras", [rois, probs, deltas])
    assert int(a[3][0]) == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_the_coded_targets_decode_back_onto_the_ground_truth():
    # what the RPN and the box head learn (encode_deltas with std, as the encoder and the
    # detection-target layer write it) must decode to the box it was computed from
    gt = np.array([0.2, 0.3, 0.55, 0.6], np.float32)
    layer = FpnProposals(128, coder=CODER, strides=[32, 64], scales=[32, 64], ratios=[0.5, 1, 2], pre_nms=10, nms_threshold=0.7,
                         proposals_training=4, proposals_inference=4)
    anchors = pyramid_anchors(128, strides=[32, 64], scales=[32, 64], ratios=[0.5, 1, 2])[1]
    scores = np.zeros((1, len(anchors)), np.float32)
    scores[0, 7] = 1.0
    deltas = np.zeros((1, len(anchors), 4), np.float32)
    deltas[0, 7] = encode_deltas(anchors[7], gt, STD)
    proposals, _ = layer(scores, deltas, training=False)
    np.testing.assert_allclose(proposals[0, 0].numpy(), gt, atol=1e-5)

    rois = np.array([[[0.25, 0.25, 0.5, 0.5]]], np.float32)
    box_deltas = np.zeros((1, 1, 3, 4), np.float32)
    box_deltas[0, 0, 2] = encode_deltas(rois[0, 0], gt, STD)
    boxes, class_ids, _, _ = MaskRcnnDetections(coder=CODER, max_detections=1)(rois, np.float32([[[0.1, 0.1, 0.8]]]), box_deltas)
    assert int(class_ids[0, 0]) == 2
    np.testing.assert_allclose(boxes[0, 0].numpy(), gt, atol=1e-5)
