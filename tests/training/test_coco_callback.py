"""COCO evaluation during training (CocoEvaluation): the numbers tools/evaluate.py prints,
every interval, in History / history.csv / TensorBoard, with prediction images."""

import csv
import json
import logging

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from detectlab.data.coco import load_coco
from detectlab.training.coco_callback import IMAGE_TAG, CocoEvaluation, class_key
from detectlab.training.runner import train
from tests.training.test_training import scalar_tags

AP_NAMES = ["val_AP", "val_AP50", "val_AP75"] + [class_key(n) for n in ("square", "circle", "triangle")]


def read_images(log_dir, tag=IMAGE_TAG) -> list[tuple[int, list[np.ndarray]]]:
    """``(step, [RGB images])`` of each image summary under ``tag``, read with TensorBoard's reader."""
    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    out = []
    for event in acc.Tensors(tag):
        encoded = tf.make_ndarray(event.tensor_proto)[2:]  # width, height, then one PNG per image
        out.append((event.step, [tf.io.decode_png(png).numpy() for png in encoded]))
    return out


def test_every_epoch_logs_ap_everywhere_with_images(trained_run):
    run = trained_run.workdir
    for name in AP_NAMES:
        assert len(trained_run.history[name]) == 4, name
        assert all(0.0 <= v <= 1.0 for v in trained_run.history[name])
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["val_AP50"]) for r in rows] == pytest.approx(trained_run.history["val_AP50"])
    validation = scalar_tags(run / "logs" / "validation")
    assert all(len(validation[f"epoch_{n[4:]}"]) == 4 for n in AP_NAMES)  # TensorBoard files val_X as validation/epoch_X
    images = read_images(run / "logs" / "images")
    assert [step for step, _ in images] == [0, 1, 2, 3]
    tiles = images[-1][1]
    assert len(tiles) == 4 and tiles[0].shape == (256, 512, 3)
    # the right half is the ground truth of the first validation image: boxes drawn over it
    first = cv2.resize(load_coco(run / "shapes" / "instances_val.json").load_image(0), (256, 256))
    assert np.abs(tiles[0][:, 256:].astype(int) - first).mean() > 1.0


def test_interval_cap_and_float32_numbers_when_training_in_bfloat16(tmp_path, shapes_dir, tiny_cfg, caplog):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    cfg = tiny_cfg("train.epochs=3", "train.steps_per_epoch=1", "train.precision=mixed_bfloat16", "eval.interval=2",
                   "train.monitor=val_AP50", "eval.tensorboard_images=0")
    with caplog.at_level(logging.INFO, logger="detectlab"):
        result = train(cfg, tmp_path)
    # evaluated at epoch 2 (the interval) and 3 (the end of the stage), not at epoch 1
    assert len(result.history["val_AP50"]) == 2 and len(result.history["loss"]) == 3
    with open(tmp_path / "history.csv") as f:
        assert [r["val_AP50"] for r in csv.DictReader(f)][0] == "NA"
    assert sum("COCO evaluation of 16 images" in r.message for r in caplog.records) == 2
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    best = state["best_epoch"]
    assert best in (2, 3) and state["best"] == max(result.history["val_AP50"])
    # the end-of-training evaluation scores best.keras in float32, as tools/evaluate.py does:
    # the bfloat16 run's callback (on a float32 twin) printed the same numbers for that epoch
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["weights"] == "checkpoints/best.keras" and metrics["epoch"] == best
    for name in ("AP", "AP50", "AP75"):
        assert metrics["bbox"][name] == result.history[f"val_{name}"][best - 2], name
    assert not (tmp_path / "logs" / "images").exists()


def test_max_images_scores_the_first_images_and_says_so(shapes_dir, tiny_cfg, caplog):
    val = load_coco(shapes_dir / "instances_val.json")
    callback = CocoEvaluation(tiny_cfg("eval.max_images=5"), val)
    assert len(callback.dataset) == 5 and callback.dataset.coco().getImgIds() == [r.image_id for r in val.records[:5]]
    assert {a["image_id"] for a in callback.dataset.coco().dataset["annotations"]} <= set(callback.dataset.coco().getImgIds())
    assert callback.names()[:3] == ("val_AP", "val_AP50", "val_AP75")
    with caplog.at_level(logging.INFO, logger="detectlab"):
        callback.on_train_begin()
    assert "scores the first 5 of 16 validation images (eval.max_images)" in caplog.text
    assert CocoEvaluation(tiny_cfg("eval.interval=0"), val).names() == ()
