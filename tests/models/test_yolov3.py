import keras
import numpy as np
import pytest

from detectlab.models.yolov3 import TINY_ANCHORS, TINY_MASKS, YoloV3
from detectlab.registry import MODELS


def param_counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return trainable + frozen, trainable, frozen


def test_reference_parameter_counts():
    # the reference Keras YOLOv3 with 80 classes: 62,001,757 / 61,949,149 / 52,608
    assert param_counts(YoloV3(num_classes=80)) == (62_001_757, 61_949_149, 52_608)
    tiny = YoloV3(num_classes=80, backbone="darknet_tiny", anchors=TINY_ANCHORS, anchor_masks=TINY_MASKS)
    assert param_counts(tiny)[0] == 8_858_734


def build(tiny_cfg, *overrides, recipe="yolov3_tiny_instant.yaml"):
    cfg = tiny_cfg(*overrides, recipe=recipe)
    return MODELS.get("yolov3").build(cfg, 3, None), cfg


@pytest.mark.parametrize("recipe, grids", [("yolov3_tiny_instant.yaml", [2, 4]), ("yolov3_darknet53_instant.yaml", [2, 4, 8])])
def test_output_shapes(tiny_cfg, recipe, grids):
    model, _ = build(tiny_cfg, recipe=recipe)
    outputs = model.predict(np.zeros((2, 64, 64, 3), np.uint8), verbose=0)
    assert [o.shape for o in outputs] == [(2, g, g, 3 * 8) for g in grids]
    assert [o.name for o in model.outputs][0].startswith("yolo_output_0") or model.output_names[0] == "yolo_output_0"


def test_save_and_safe_mode_reload_give_identical_detections(tiny_cfg, tmp_path):
    model, _ = build(tiny_cfg)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)  # no custom_objects
    assert type(again) is YoloV3 and again.num_classes == 3
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3)).astype(np.float32)
    a = model.inference_model(0.0, 0.5, 20)(images)
    b = again.inference_model(0.0, 0.5, 20)(images)
    for key in ("boxes", "scores", "class_ids", "valid"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    assert int(a["valid"][0]) > 0


def test_layer_presets_freeze_the_body(tiny_cfg):
    model, _ = build(tiny_cfg)
    trained = model.set_trainable_layers("heads")
    assert trained and all(name.startswith("yolo_") for name in trained)
    assert not model.get_layer("darknet_conv_000").trainable and not model.get_layer("darknet_bn_000").trainable
    assert model.set_trainable_layers("outputs") == ["yolo_output_0", "yolo_output_1"]
    assert len(model.set_trainable_layers("all")) == len([l for l in model.layers if l.weights])
    from detectlab.errors import ConfigError

    with pytest.raises(ConfigError, match="matches no layer"):
        model.set_trainable_layers("nothing_.*")
    with pytest.raises(ConfigError, match="neither a preset"):
        model.set_trainable_layers("(")


def test_unknown_loss_weight_is_an_error(tiny_cfg):
    from detectlab.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.weights: unknown loss 'yolo_box_loss'"):
        build(tiny_cfg, "loss.weights={yolo_box_loss: 2}")


def mean_objectness(model, images) -> float:
    """Mean sigmoid objectness over every anchor of every output, ``images`` uint8 (B, H, W, 3)."""
    values = []
    for raw in model.predict(images, verbose=0):
        per_anchor = raw.reshape(*raw.shape[:3], -1, 5 + model.num_classes)
        values.append(1 / (1 + np.exp(-per_anchor[..., 4].ravel())))
    return float(np.concatenate(values).mean())


def test_fresh_outputs_start_near_their_prior_on_real_photos():
    """A from-scratch tiny and the published COCO tiny file fine-tuned to one class both start
    at objectness ~0.01 (not 0.5 at all 2,535 anchors), on real photos."""
    import cv2

    from tests.conftest import shared_path
    from detectlab.heads.yolo import OBJECTNESS_PRIOR, prior_biases
    from detectlab.weights.formats import load_weights

    photos = sorted(shared_path("data", "kangaroo", "images").glob("*.jpg"))[:4]
    images = np.stack([cv2.resize(cv2.imread(str(p))[..., ::-1], (416, 416)) for p in photos])
    tiny = YoloV3(num_classes=1, backbone="darknet_tiny", anchors=TINY_ANCHORS, anchor_masks=TINY_MASKS)
    np.testing.assert_allclose(tiny.get_layer("yolo_output_1").get_weights()[1], prior_biases(3, 1), rtol=1e-6)
    assert abs(prior_biases(3, 80)[4] - np.log(OBJECTNESS_PRIOR / (1 - OBJECTNESS_PRIOR))) < 1e-6
    assert mean_objectness(tiny, images) <= 0.02
    report = load_weights(tiny, shared_path("pretrained", "yolov3-tiny.weights"))
    assert report.excluded == ["yolo_output_0", "yolo_output_1"]  # trained for 80 classes: fresh here
    assert mean_objectness(tiny, images) <= 0.02
