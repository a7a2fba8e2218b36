import keras
import numpy as np
import pytest

from detectlab.box_coding import DeltaCoder
from detectlab.layers.proposals import RpnProposals
from detectlab.models.faster_rcnn import FasterRCNN
from detectlab.registry import BACKBONES, MODELS
from detectlab.training.alternating import compile_views, training_views


@pytest.mark.parametrize("name, output, params", [("vgg16", "C4", 14_714_688), ("resnet50", "C5", 23_587_712), ("resnet101", "C5", 42_658_176)])
def test_backbones_are_the_reference_networks(name, output, params):
    # the Keras applications "notop" parameter counts of VGG16, ResNet50 and ResNet101
    images = keras.Input((224, 224, 3))
    features = BACKBONES.get(name)(images, train_bn=True)
    assert keras.Model(images, features[output]).count_params() == params
    stride = 224 // features["C4"].shape[1]
    assert stride == 16


def numpy_proposals(anchors, scores, deltas, std, pre_nms, iou, keep):
    d = deltas.reshape(-1, 4)[:, [1, 0, 3, 2]] / std  # (tx, ty, tw, th) -> (ty, tx, th, tw)
    h, w = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cy, cx = anchors[:, 0] + h / 2 + d[:, 0] * h, anchors[:, 1] + w / 2 + d[:, 1] * w
    h, w = h * np.exp(d[:, 2]), w * np.exp(d[:, 3])
    boxes = np.clip(np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1), 0, 1)
    order = np.argsort(-scores.reshape(-1), kind="stable")[:pre_nms]
    chosen = []
    for i in order:
        b = boxes[i]
        ok = True
        for j in chosen:
            c = boxes[j]
            inter = max(0, min(b[2], c[2]) - max(b[0], c[0])) * max(0, min(b[3], c[3]) - max(b[1], c[1]))
            union = (b[2] - b[0]) * (b[3] - b[1]) + (c[2] - c[0]) * (c[3] - c[1]) - inter
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            chosen.append(i)
        if len(chosen) == keep:
            break
    return boxes[chosen]


def test_proposal_layer_matches_a_numpy_computation():
    layer = RpnProposals(image_size=64, stride=16, scales=[16, 32], ratios=[(1, 1), (0.7, 1.4)], coder=DeltaCoder.keras_frcnn(4.0), pre_nms=20, nms_threshold=0.5, max_proposals=8)
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(1, 4, 4, 4)).astype(np.float32)
    deltas = rng.normal(scale=0.5, size=(1, 4, 4, 16)).astype(np.float32)
    boxes, counts = layer(scores, deltas)
    expected = numpy_proposals(layer.anchors, scores[0], deltas[0], 4.0, 20, 0.5, 8)
    assert int(counts[0]) == len(expected)
    np.testing.assert_allclose(boxes[0, : len(expected)].numpy(), expected, atol=1e-5)
    assert not boxes[0, len(expected) :].numpy().any()


def build(tiny_cfg, recipe="faster_rcnn_vgg16_instant.yaml"):
    return MODELS.get("faster_rcnn").build(tiny_cfg(recipe=recipe), 3, None, (["a", "b", "c"], [3, 5, 9]))


@pytest.mark.parametrize("recipe", ["faster_rcnn_vgg16_instant.yaml", "faster_rcnn_resnet50_instant.yaml"])
def test_outputs_views_and_safe_mode_reload(tiny_cfg, tmp_path, recipe):
    model = build(tiny_cfg, recipe)
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.float32)
    rois = np.tile(np.array([[[0.1, 0.1, 0.5, 0.5], [0.3, 0.2, 0.9, 0.7], [0, 0, 1, 1]]], np.float32), (2, 1, 1))
    rpn_scores, rpn_deltas, probs, deltas = model.predict([images, rois], verbose=0)
    assert rpn_scores.shape == (2, 4, 4, 9) and rpn_deltas.shape == (2, 4, 4, 36)
    assert probs.shape == (2, 3, 4) and deltas.shape == (2, 3, 12)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # the views are the combined model's layers
    shared = {id(v) for v in model.weights}
    assert {id(v) for v in training_views(model).rpn.weights} <= shared and {id(v) for v in training_views(model).classifier.weights} <= shared
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    assert type(again) is FasterRCNN and again.class_names == ["a", "b", "c"] and again.category_ids == [3, 5, 9]
    a = model.inference_model(0.0, 0.5, 10)(images)
    b = again.inference_model(0.0, 0.5, 10)(images)
    for key in ("boxes", "scores", "class_ids", "valid"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    assert a["boxes"].shape == (2, 10, 4) and int(a["valid"][0]) > 0


def test_training_the_rpn_view_updates_the_shared_backbone(tiny_cfg):
    from detectlab.training.optimizers import FusedAdam

    model = build(tiny_cfg)
    views = compile_views(model, FusedAdam(1e-2), FusedAdam(1e-2))
    before = model.get_layer("block1_conv1").get_weights()[0].copy()
    x = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8)
    y = {"rpn_class": np.zeros((2, 4, 4, 18), np.float32), "rpn_regress": np.zeros((2, 4, 4, 72), np.float32)}
    y["rpn_class"][..., :9] = 1  # all sampled, all negative
    logs = views.rpn.train_on_batch(x, y, return_dict=True)
    assert set(logs) >= {"rpn_loss_cls", "rpn_loss_regr", "rpn_loss", "proposals", "proposal_counts"}
    assert logs["proposals"].shape == (2, 40, 4)
    assert not np.array_equal(before, model.get_layer("block1_conv1").get_weights()[0])
    assert model.set_trainable_layers("rpn") == ["rpn_conv1", "rpn_out_class", "rpn_out_regress"]


def test_the_coded_targets_decode_back_onto_the_ground_truth():
    from detectlab.data.rcnn_targets import RpnTargetEncoder
    from detectlab.layers.roi_sampling import RoiSampler
    from detectlab.layers.rcnn_detections import RcnnBoxDecoder
    from detectlab.models.faster_rcnn import box_coders

    rpn_coder, roi_coder = box_coders(4.0, (8.0, 8.0, 4.0, 4.0))  # the family's, as the loader and graph get them

    gt = np.float32([[40, 52, 100, 90]])  # pixels of a 128 px image, y1 x1 y2 x2
    encoder = RpnTargetEncoder(128, 16, [32, 64], [[1, 1], [1, 2], [2, 1]], rpn_coder, samples=64)
    cls, regress = encoder.encode(gt, np.array([False]), np.random.default_rng(0))
    a = encoder.num_anchors
    positive = cls[..., a:]
    assert positive.sum() >= 1
    scores = positive[None] + 0.01  # the positive anchors lead
    proposals, count = RpnProposals(128, 16, [32, 64], [[1, 1], [1, 2], [2, 1]], rpn_coder, pre_nms=50, nms_threshold=0.7,
                                    max_proposals=5)(scores, regress[None, ..., 4 * a:])
    np.testing.assert_allclose(proposals[0, 0].numpy() * 128, gt[0], atol=1e-3)

    rois = np.float32([[[0.3, 0.4, 0.75, 0.7], [0.32, 0.38, 0.8, 0.72]]])
    sampled = RoiSampler(2, roi_coder, num_rois=2, add_gt=False)(rois, np.array([2]), gt[None] / 128, np.int32([[1]]),
                                                                np.int64([0]))
    assert sampled["positives"] == 2
    boxes, _ = RcnnBoxDecoder(2, roi_coder)(sampled["rois"], sampled["classes"], sampled["regress"][..., 8:])
    np.testing.assert_allclose(boxes[0, :, 1].numpy() * 128, np.repeat(gt, 2, 0), atol=1e-3)
