"""Export: the SavedModel reloads in a fresh process with TensorFlow only (``detectlab`` cannot
be imported there) and reproduces ``Predictor`` on images of several sizes; TFLite runs."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from detectlab.errors import ExportError
from detectlab.inference.export import (
    TfliteDetector, export_saved_model, parity_images, parity_problem, tflite_bytes,
)
from detectlab.inference.predictor import Detections, Predictor
from detectlab.models.loading import model_from_config
from tests.conftest import ENV, INSTANT, tool

# Runs in a fresh interpreter: detectlab is made unimportable, only TensorFlow loads the model.
SERVE = """
import sys
sys.modules["detectlab"] = None
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
data = np.load(sys.argv[2], allow_pickle=True)
out = {}
for k in range(int(data["count"])):
    r = loaded.signatures["serving_default"](image=tf.constant(data[f"image_{k}"]))
    out.update({f"{name}_{k}": v.numpy() for name, v in r.items()})
for kind in ("png", "jpeg"):
    r = loaded.signatures["serving_bytes"](image_bytes=tf.constant(data[kind].tobytes()))
    out.update({f"{name}_{kind}": v.numpy() for name, v in r.items()})
r = loaded.signatures["detect"](image=tf.constant(data["image_0"]), score_threshold=tf.constant(0.999),
                                nms_threshold=tf.constant(0.45))
out["num_detections_strict"] = r["num_detections"].numpy()
np.savez(sys.argv[3], **out)
"""


def build(recipe: str, classes: int = 3):
    from detectlab.config import load_config

    cfg = load_config(INSTANT / recipe, [f"model.num_classes={classes}"])
    model = model_from_config(cfg, None)
    for layer in model.layers:  # untrained YOLO outputs start at their prior scores (~0.003): lift them
        if layer.name.startswith("yolo_output_"):  # to ~0.25 so the parity checks compare many boxes
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 30, np.zeros_like(bias)])
    return cfg, model


def serve_in_fresh_process(tmp_path, export_dir, images):
    png = cv2.imencode(".png", cv2.cvtColor(images[1], cv2.COLOR_RGB2BGR))[1]
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(images[2], cv2.COLOR_RGB2BGR))[1]
    np.savez(tmp_path / "in.npz", count=len(images), png=png, jpeg=jpeg, **{f"image_{k}": im for k, im in enumerate(images)})
    done = subprocess.run([sys.executable, "-c", SERVE, str(export_dir), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = dict(np.load(tmp_path / "out.npz", allow_pickle=True))  # class_names: bytes objects
    return out, jpeg


def detections(out, key) -> Detections:
    masks = out[f"masks_{key}"] if f"masks_{key}" in out else None
    return Detections(out[f"boxes_{key}"][:, [1, 0, 3, 2]], out[f"scores_{key}"], out[f"class_ids_{key}"], masks)


def check_family(tmp_path, recipe, score=0.05, max_detections=20):
    cfg, model = build(recipe)
    size = cfg.model.image_size
    export_saved_model(model, tmp_path / "sm", size, score, 0.45, max_detections, cfg.model.family)
    images = parity_images(size, count=4)
    assert sorted({im.shape[:2] for im in images}) == sorted(im.shape[:2] for im in images)  # four sizes
    out, jpeg = serve_in_fresh_process(tmp_path, tmp_path / "sm", images)
    predictor = Predictor(model, size, score, 0.45, max_detections)
    expected = predictor.predict(images)
    assert sum(len(d) for d in expected) > 0  # the comparison is not vacuous
    for k, (image, want) in enumerate(zip(images, expected)):
        got = detections(out, k)
        assert out[f"class_names_{k}"].tolist() == [model.class_names[c].encode() for c in got.class_ids]
        assert int(out[f"num_detections_{k}"]) == len(got)
        assert (got.boxes[:, [2, 3]] <= np.array(image.shape[:2]) + 1e-3).all()  # input-image pixels
        assert parity_problem(want, got, score, max_detections) is None, (k, image.shape)
        if got.masks is not None:
            assert got.masks.shape[1:] == image.shape[:2] and got.masks.dtype == np.uint8
    # bytes signature: PNG is lossless, so it matches Predictor on the same pixels ...
    assert parity_problem(expected[1], detections(out, "png"), score, max_detections) is None
    # ... JPEG decodes (TensorFlow's decoder) to what the image signature gets for those pixels
    decoded = tf.io.decode_jpeg(jpeg.tobytes(), channels=3).numpy()
    assert decoded.shape == images[2].shape
    assert parity_problem(predictor.predict([decoded])[0], detections(out, "jpeg"), score, max_detections) is None
    # thresholds as signature inputs
    assert int(out["num_detections_strict"]) <= len(detections(out, 0))
    return model


def test_yolo_tiny_saved_model_matches_predictor_without_detectlab(tmp_path):
    check_family(tmp_path, "yolov3_tiny_instant.yaml")


@pytest.mark.slow
def test_mask_rcnn_saved_model_matches_predictor_with_full_size_masks(tmp_path):
    model = check_family(tmp_path, "mask_rcnn_r50_instant.yaml", score=0.0)
    with pytest.raises(ExportError, match="TFLite export supports YOLOv3 models only"):
        tflite_bytes(model, 64, 0.3, 0.45, 10)


@pytest.mark.slow
def test_faster_rcnn_saved_model_matches_predictor(tmp_path):
    check_family(tmp_path, "faster_rcnn_vgg16_instant.yaml")


@pytest.mark.slow
def test_yolov3_saved_model_matches_predictor(tmp_path):
    check_family(tmp_path, "yolov3_darknet53_instant.yaml")


def test_parity_problem_names_a_moved_box():
    want = Detections(np.array([[10, 10, 30, 30]], np.float32), np.array([0.9], np.float32), np.array([1], np.int32))
    same = Detections(want.boxes + 0.5, want.scores, want.class_ids)
    moved = Detections(want.boxes + [0, 0, 2.5, 0], want.scores, want.class_ids)
    other_class = Detections(want.boxes, want.scores, np.array([0], np.int32))
    assert parity_problem(want, same, 0.3, 100) is None
    assert "no counterpart within 1 px" in parity_problem(want, moved, 0.3, 100)
    assert "no counterpart" in parity_problem(want, other_class, 0.3, 100)
    # a detection just above the threshold may fall on either side of it
    marginal = Detections(want.boxes, np.array([0.31], np.float32), want.class_ids)
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    assert parity_problem(marginal, empty, 0.3, 100) is None
    assert "extra detection" in parity_problem(empty, want, 0.3, 100)


@pytest.mark.slow
def test_tflite_float32_matches_predictor_and_int8_runs():
    cfg, model = build("yolov3_tiny_instant.yaml")
    size = cfg.model.image_size
    predictor = Predictor(model, size, 0.05, 0.45, 20)
    images = parity_images(size, count=4)
    detector = TfliteDetector(tflite_bytes(model, size, 0.05, 0.45, 20, "float32"), size)
    for image, want in zip(images, predictor.predict(images)):
        assert len(want) > 0
        assert parity_problem(want, detector.predict(image), 0.05, 20) is None
    calibration = [predictor.letterbox(im)[0] for im in images]
    int8 = TfliteDetector(tflite_bytes(model, size, 0.05, 0.45, 20, "int8", calibration), size)
    got = int8.predict(images[0])
    assert 0 < len(got) <= 20 and got.boxes.shape == (len(got), 4) and got.class_ids.max() < 3


def test_export_tool_errors_are_one_line(tmp_path):
    done = tool("tools/export.py", "--config", INSTANT / "yolov3_tiny_instant.yaml", "--weights", tmp_path / "x.keras",
                "--format", "tflite", "--quantize", "int8", timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "--calibration" in done.stderr


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime_like_predictor(tmp_path):
    pytest.importorskip("tf2onnx", reason="ONNX export needs tf2onnx (pip install 'detectlab[onnx]')")
    from detectlab.inference.export import export_onnx, onnx_detector

    cfg, model = build("yolov3_tiny_instant.yaml")
    size = cfg.model.image_size
    export_saved_model(model, tmp_path / "sm", size, 0.05, 0.45, 20)
    detect = onnx_detector(export_onnx(tmp_path / "sm", tmp_path / "model.onnx"))
    predictor = Predictor(model, size, 0.05, 0.45, 20)
    images = parity_images(size, count=2)
    for image, want in zip(images, predictor.predict(images)):
        assert len(want) > 0
        assert parity_problem(want, detect(image), 0.05, 20) is None


def test_exports_trace_convolutions_without_extract_patches():
    from detectlab.layers.conv import AdaptiveConv2D, portable_convolutions

    layer = AdaptiveConv2D(64, 3, padding="same")
    assert layer.computation((1, 4, 4, 512)) == "patches"  # ExtractImagePatches: no TFLite / ONNX kernel
    with portable_convolutions():
        assert layer.computation((1, 4, 4, 512)) is None
    assert layer.computation((1, 4, 4, 512)) == "patches"


@pytest.mark.slow
def test_export_tool_checks_parity_itself(tmp_path):
    cfg, model = build("yolov3_tiny_instant.yaml")
    model.save(tmp_path / "m.keras")
    done = tool("tools/export.py", "--config", INSTANT / "yolov3_tiny_instant.yaml", "--set", "model.num_classes=3",
                "--weights", tmp_path / "m.keras", "--format", "saved_model", "--out", tmp_path / "sm", "--score", "0.05")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "detections within 1 px" in done.stdout
    info = json.loads((tmp_path / "sm" / "detectlab_export.json").read_text())
    assert info["class_names"] == model.class_names and info["score_threshold"] == 0.05
