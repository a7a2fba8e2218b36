"""Mask R-CNN through the real code path at test size: reference parameter count, loader
targets, training through the runner (every named loss finite, in History/CSV/TensorBoard),
safe-mode reload with identical detections, layer presets, reference-layout .h5 loading."""

import csv
import json
import shutil

import h5py
import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from detectlab.box_coding import DeltaCoder
from detectlab.data.mask_rcnn_targets import MaskRcnnTargetEncoder, mini_masks
from detectlab.data.transforms import Sample
from detectlab.errors import WeightsError
from detectlab.registry import MODELS
from detectlab.training.runner import train
from detectlab.weights.by_name import save_h5
from detectlab.weights.formats import load_weights

RECIPE = "mask_rcnn_r50_instant.yaml"
LOSSES = ["rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"]


def build(tiny_cfg, classes=3, *overrides):
    return MODELS.get("mask_rcnn").build(tiny_cfg(*overrides, recipe=RECIPE), classes, None, ([f"c{k}" for k in range(classes)], list(range(1, classes + 1))))


def test_resnet101_fpn_has_the_reference_parameter_counts(tiny_cfg):
    # matterport's Mask R-CNN, ResNet-101, 81 classes, 1024 px
    model = MODELS.get("mask_rcnn").build(tiny_cfg("model.width=1.0", "model.resnet_stages=null", "model.backbone=resnet101",
                                                   "model.image_size=1024", recipe=RECIPE), 80, None)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert model.count_params() == 64_158_584
    assert trainable == 64_047_096
    for name in ("fpn_c5p5", "fpn_p6", "rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred", "mrcnn_class_conv1",
                 "mrcnn_class_bn2", "mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask_conv4", "mrcnn_mask_deconv", "mrcnn_mask"):
        model.get_layer(name)
    assert model.get_layer("mrcnn_class_logits").kernel.shape == (1024, 81)


def test_under_mixed_bfloat16_the_heads_compute_in_bfloat16_and_their_outputs_reach_the_loss_in_float32(tiny_cfg):
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    model = build(tiny_cfg)
    for name in ("rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred", "mrcnn_mask"):
        assert model.get_layer(name).compute_dtype == "bfloat16", name  # no float32 copy of their large inputs
    for name in ("rpn_class_logits", "rpn_bbox", "mrcnn_class_logits", "mrcnn_bbox", "mrcnn_mask"):
        assert model.output[name].dtype == "float32", name


def test_encoder_rpn_targets_and_mini_masks():
    enc = MaskRcnnTargetEncoder(64, (4, 8, 16, 32, 64), (8, 16, 24, 32, 48), (0.5, 1, 2), DeltaCoder.matterport((0.1, 0.1, 0.2, 0.2)),
                                samples=32, mini_mask=8)
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 8:24, 8:16] = 1  # left half of box 0 is object
    masks[1, 40:56, 32:64] = 1
    boxes = np.array([[8, 8, 24, 24], [40, 32, 56, 64]], np.float32)
    sample = Sample(np.zeros((64, 64, 3), np.uint8), boxes, np.array([0, 2], np.int32), np.array([False, True]), masks, 1, (1, 1, 0, 0), (64, 64), seed=3)
    (x,) = enc([sample])
    match, bbox = x["rpn_match"][0], x["rpn_bbox"][0]
    assert (match == 1).sum() >= 1 and (match == 1).sum() <= 16 and (match != 0).sum() == 32
    pos = np.nonzero(match == 1)[0]
    anchors = enc.anchors[pos]
    # the positive anchors decode onto box 0 (the crowd box is never a target)
    h, w = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    d = bbox[pos] * np.array([0.1, 0.1, 0.2, 0.2])
    cy, cx = anchors[:, 0] + h / 2 + d[:, 0] * h, anchors[:, 1] + w / 2 + d[:, 1] * w
    np.testing.assert_allclose(np.stack([cy, cx], 1), np.tile([[16, 16]], (len(pos), 1)), atol=1e-4)
    assert not bbox[match != 1].any()
    # anchors overlapping the crowd box are never negative
    from detectlab.boxes import iou_matrix
    assert (iou_matrix(enc.anchors[match == -1], boxes[1:]) < 0.001).all()
    assert x["gt_class_ids"][0, :3].tolist() == [1, -3, 0]
    np.testing.assert_allclose(x["gt_boxes"][0, 0], [0.125, 0.125, 0.375, 0.375])
    np.testing.assert_array_equal(x["gt_masks"][0, 0], np.repeat([[1] * 4 + [0] * 4], 8, axis=0))
    np.testing.assert_array_equal(mini_masks(masks[1:], boxes[1:], 4)[0], np.ones((4, 4)))


@pytest.fixture(scope="module")
def mask_run(tmp_path_factory, shapes_dir):
    from detectlab.config import load_config
    from tests.conftest import INSTANT

    workdir = tmp_path_factory.mktemp("mask_run")
    (workdir / "shapes").symlink_to(shapes_dir)
    cfg = load_config(INSTANT / RECIPE, ["train.epochs=2", "train.steps_per_epoch=4", "train.workers=2",
                                         "train.use_multiprocessing=true", "data.shapes.size=64", "data.shapes.train=48",
                                         "data.shapes.val=16"])
    return train(cfg, workdir)


def test_training_logs_every_named_loss(mask_run):
    for name in LOSSES + ["l2_loss", "loss"]:
        values = mask_run.history[name]
        assert len(values) == 2 and np.isfinite(values).all(), name
        assert np.isfinite(mask_run.history[f"val_{name}"]).all()
    parts = sum(mask_run.history[name][-1] for name in LOSSES + ["l2_loss"])
    assert parts == pytest.approx(mask_run.history["loss"][-1], rel=1e-4)
    with open(mask_run.workdir / "history.csv") as f:
        assert set(LOSSES) <= set(next(csv.DictReader(f)))
    acc = EventAccumulator(str(mask_run.workdir / "logs" / "train"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    tags = set(acc.Tags().get("tensors", [])) | set(acc.Tags().get("scalars", []))
    for name in LOSSES + ["l2_loss"]:
        assert f"epoch_{name}" in tags and f"batch_{name}" in tags, name
    assert set(mask_run.metrics) >= {"bbox", "segm"}


def test_safe_mode_reload_gives_identical_detections(mask_run, tmp_path):
    model = mask_run.model
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3)).astype(np.float32)
    a = model.inference_model(0.0, 0.3, 10)(images)
    b = again.inference_model(0.0, 0.3, 10)(images)
    assert a["masks"].shape == (3, 10, 28, 28)
    for key in ("boxes", "scores", "class_ids", "valid", "masks"):
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def test_layer_presets(tiny_cfg):
    model = build(tiny_cfg)
    heads = model.set_trainable_layers("heads")
    assert "rpn_conv_shared" in heads and "fpn_p2" in heads and "mrcnn_mask" in heads
    assert not any(n.startswith(("res", "bn")) for n in heads)
    four = model.set_trainable_layers("4+")
    assert "res4a_branch2a" in four and "res3a_branch2a" not in four and "mrcnn_class_conv1" in four
    assert "res3a_branch2a" in model.set_trainable_layers("3+")
    assert len(model.set_trainable_layers("all")) > len(four)


def write_reference_h5(model, path):
    """The reference's Keras 2 by-name layout: our by-name file with the RPN's three layers
    moved into one nested 'rpn_model' group, as matterport saved its shared RPN."""
    rpn = ("rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred")
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
    save_h5(model, path)
    with h5py.File(path, "a") as f:
        nested, names = f.create_group("rpn_model"), []
        for layer in rpn:
            for weight in map(text, f[layer].attrs["weight_names"]):
                nested.create_dataset(weight, data=f[layer][weight][()])
                names.append(weight.encode())
            del f[layer]
        nested.attrs["weight_names"] = names
        f.attrs["layer_names"] = [n.encode() for n in map(text, f.attrs["layer_names"]) if n not in rpn] + [b"rpn_model"]


def test_reference_layout_h5_loads_by_name_with_exclusions(tiny_cfg, tmp_path):
    source = build(tiny_cfg, classes=80)
    write_reference_h5(source, tmp_path / "mask_rcnn_coco.h5")
    target = build(tiny_cfg, classes=3)
    with pytest.raises(WeightsError, match=r"layer 'mrcnn_bbox_fc' has shapes .*layer 'mrcnn_class_logits' has shapes .*--exclude 'mrcnn_bbox_fc\|mrcnn_mask\|mrcnn_class_logits'"):
        load_weights(target, tmp_path / "mask_rcnn_coco.h5")
    report = load_weights(target, tmp_path / "mask_rcnn_coco.h5", exclude=r"mrcnn_class_logits|mrcnn_bbox_fc|mrcnn_mask")
    assert sorted(report.excluded) == ["mrcnn_bbox_fc", "mrcnn_class_logits", "mrcnn_mask"]
    assert not report.missing
    for name in ("rpn_conv_shared", "rpn_bbox_pred", "res2a_branch2a", "mrcnn_mask_deconv", "fpn_p2"):
        for a, b in zip(source.get_layer(name).get_weights(), target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_staged_recipe_trains_the_right_layers_and_resumes_into_the_next_stage(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    common = ["train.steps_per_epoch=2", "train.checkpoint_keep=5", "eval.after_training=false", "data.shapes.size=64", "data.shapes.train=48", "data.shapes.val=16"]  # the shared dataset as written: other sizes would rewrite it under every other test
    two = "train.stages=[{name: heads, layers: heads, epochs: 1, lr: 0.01}, {name: 4+, layers: 4+, epochs: 1, lr: 0.01}]"
    first = train(tiny_cfg(two, *common, recipe=RECIPE), tmp_path)
    assert first.history["learning_rate"] == pytest.approx([0.01, 0.01])
    three = two[:-1] + ", {name: all, layers: all, epochs: 1, lr: 0.001}]"
    resumed = train(tiny_cfg(three, *common, recipe=RECIPE), tmp_path, resume=True)
    assert resumed.history["learning_rate"] == pytest.approx([0.001])  # only the new stage ran
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 3 and state["stage"] == 2

    def kernel(epoch, layer):
        model = keras.saving.load_model(tmp_path / "checkpoints" / f"epoch_{epoch:03d}.keras", compile=False)
        return model.get_layer(layer).get_weights()[0]

    # stage '4+' leaves ResNet stage 2 alone and trains stage 4; stage 'all' trains stage 2
    np.testing.assert_array_equal(kernel(1, "res2a_branch2a"), kernel(2, "res2a_branch2a"))
    assert not np.array_equal(kernel(1, "res4a_branch2a"), kernel(2, "res4a_branch2a"))
    assert not np.array_equal(kernel(2, "res2a_branch2a"), kernel(3, "res2a_branch2a"))


def test_predict_tool_draws_masks_and_writes_rle(mask_run, tmp_path):
    from pycocotools import mask as mask_utils

    from detectlab.inference.predictor import Detections
    from detectlab.inference.visualize import draw_detections
    from tests.conftest import tool

    image = np.full((40, 40, 3), 10, np.uint8)
    mask = np.zeros((1, 40, 40), np.uint8)
    mask[0, 22:30, 22:30] = 1
    drawn = draw_detections(image, Detections(np.float32([[20, 20, 38, 38]]), np.float32([0.9]), np.int32([0]), mask), ["c"])
    assert (drawn[23:29, 23:29] != 10).any(-1).all()  # the mask is tinted
    assert (drawn[31:37, 31:37] == 10).all()  # the rest of the box is not

    # the two-epoch model may call every ROI background; bias its classifier towards class 1
    # so that the tool has detections to draw and write (what is tested here is the tool)
    model = keras.saving.load_model(mask_run.workdir / "checkpoints" / "last.keras", compile=False)
    logits = model.get_layer("mrcnn_class_logits")
    logits.bias.assign(np.float32([0, 10, 0, 0]))
    model.save(tmp_path / "biased.keras")
    shutil.copy(mask_run.workdir / "config.yaml", tmp_path / "config.yaml")
    val = mask_run.workdir / "shapes" / "val"
    result = tool("tools/predict.py", "--weights", tmp_path / "biased.keras",
                  "--images", val / "000000.jpg", "--out", tmp_path / "out", "--score", "0.0")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "000000.jpg").is_file()
    detections = json.loads((tmp_path / "out" / "results.json").read_text())
    assert detections
    for d in detections:
        assert mask_utils.decode(d["segmentation"]).shape == (64, 64)
