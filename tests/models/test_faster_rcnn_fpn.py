"""Faster R-CNN FPN (Mask R-CNN without its mask head) through the real code path at test
size: training through the runner and ``fit`` on the four named box losses, COCO bbox
evaluation, safe-mode reload with identical detections, and matterport ``.h5`` files loading
by name with the mask head left out and named."""

import keras
import numpy as np
import pytest

from detectlab.registry import MODELS
from detectlab.training.runner import train
from detectlab.weights.formats import load_weights
from tests.models.test_mask_rcnn import write_reference_h5

RECIPE = "faster_rcnn_r50_fpn_instant.yaml"
LOSSES = ["rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss"]
MASK_HEAD = ["mrcnn_mask", "mrcnn_mask_bn1", "mrcnn_mask_bn2", "mrcnn_mask_bn3", "mrcnn_mask_bn4", "mrcnn_mask_conv1",
             "mrcnn_mask_conv2", "mrcnn_mask_conv3", "mrcnn_mask_conv4", "mrcnn_mask_deconv"]


@pytest.fixture(scope="module")
def fpn_run(tmp_path_factory, shapes_dir):
    from detectlab.config import load_config
    from tests.conftest import INSTANT

    workdir = tmp_path_factory.mktemp("fpn_run")
    (workdir / "shapes").symlink_to(shapes_dir)
    cfg = load_config(INSTANT / RECIPE, ["train.epochs=2", "train.steps_per_epoch=4", "data.shapes.size=64",
                                         "data.shapes.train=48", "data.shapes.val=16", "eval.interval=0"])
    return train(cfg, workdir)


def test_trains_through_fit_on_the_four_box_losses_and_evaluates_bbox_ap(fpn_run):
    model = fpn_run.model
    assert type(model).__name__ == "FasterRCNNFPN" and model.loss_names == tuple(LOSSES)
    assert "gt_masks" not in model.input and "mrcnn_mask" not in model.output
    for name in LOSSES + ["l2_loss", "loss"]:
        values = fpn_run.history[name]
        assert len(values) == 2 and np.isfinite(values).all(), name
        assert np.isfinite(fpn_run.history[f"val_{name}"]).all(), name
    assert "mrcnn_mask_loss" not in fpn_run.history
    parts = sum(fpn_run.history[name][-1] for name in LOSSES + ["l2_loss"])
    assert parts == pytest.approx(fpn_run.history["loss"][-1], rel=1e-4)
    assert fpn_run.history["rpn_class_loss"][-1] < fpn_run.history["rpn_class_loss"][0]
    # evaluation after training: COCO bbox metrics of best.keras, no segm
    metrics = fpn_run.metrics
    assert "segm" not in metrics and metrics["num_detections"] > 0
    assert 0.0 <= metrics["bbox"]["AP"] <= 1.0 and 0.0 <= metrics["bbox"]["AP50"] <= 1.0
    assert (fpn_run.workdir / "metrics.json").is_file()


def test_safe_mode_reload_gives_identical_detections(fpn_run, tmp_path):
    model = fpn_run.model
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert type(again).__name__ == "FasterRCNNFPN"
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3)).astype(np.float32)
    a = model.inference_model(0.0, 0.3, 10)(images)
    b = again.inference_model(0.0, 0.3, 10)(images)
    assert set(a) == {"boxes", "scores", "class_ids", "valid"} and a["boxes"].shape == (3, 10, 4)
    assert int(np.sum(a["valid"])) > 0
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def test_the_criterion_is_mask_rcnns_without_the_mask_term(tiny_cfg):
    from detectlab.errors import ConfigError

    ciou = MODELS.get("faster_rcnn_fpn").build(tiny_cfg("loss.box=ciou", recipe=RECIPE), 3, None)
    assert ciou.loss_names == ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_ciou_loss")
    with pytest.raises(ConfigError, match="loss.terms: 'mrcnn_mask_loss' needs a mask head"):
        MODELS.get("faster_rcnn_fpn").build(tiny_cfg("loss.terms=[rpn_class_loss, mrcnn_mask_loss]", recipe=RECIPE), 3, None)


def test_matterport_file_loads_by_name_with_the_mask_head_left_out_and_named(tiny_cfg, tmp_path):
    # a Mask R-CNN file of the same structure, in matterport's layout (nested rpn_model)
    mask_cfg = tiny_cfg("model.mini_mask=28", recipe="mask_rcnn_r50_instant.yaml")
    source = MODELS.get("mask_rcnn").build(mask_cfg, 3, None)
    write_reference_h5(source, tmp_path / "mask_rcnn_shapes.h5")
    target = MODELS.get("faster_rcnn_fpn").build(tiny_cfg(recipe=RECIPE), 3, None)
    report = load_weights(target, tmp_path / "mask_rcnn_shapes.h5")
    assert report.left_out == MASK_HEAD and report.unused == MASK_HEAD
    assert not report.missing and not report.excluded
    assert "left out 10 layers this model does not have (mrcnn_mask, mrcnn_mask_bn1" in report.summary()
    for name in ("rpn_conv_shared", "res2a_branch2a", "fpn_p2", "mrcnn_class_conv1", "mrcnn_class_bn2", "mrcnn_bbox_fc"):
        for a, b in zip(source.get_layer(name).get_weights(), target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    # the loaded network predicts what the Mask R-CNN's box branch predicts
    images = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3)).astype(np.float32)
    want = source.inference_model(0.0, 0.3, 10)(images)
    got = target.inference_model(0.0, 0.3, 10)(images)
    for key in ("boxes", "scores", "class_ids", "valid"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]), atol=1e-5, err_msg=key)
