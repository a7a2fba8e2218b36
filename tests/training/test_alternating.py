"""Faster R-CNN's alternating train_on_batch loop through the runner and Keras callbacks."""

import csv
import json

import pytest
from tensorboard.util import tensor_util

from detectlab.errors import TrainingError
from detectlab.training.runner import train
from tests.conftest import tool
from tests.training.test_training import scalar_tags

NAMES = ["rpn_loss_cls", "rpn_loss_regr", "class_loss_cls", "class_loss_regr", "class_acc", "loss"]


@pytest.fixture(scope="module")
def frcnn_run(tmp_path_factory, shapes_dir):
    from detectlab.config import load_config
    from tests.conftest import INSTANT

    workdir = tmp_path_factory.mktemp("frcnn")
    (workdir / "shapes").symlink_to(shapes_dir)
    cfg = load_config(INSTANT / "faster_rcnn_vgg16_instant.yaml", ["train.epochs=3"])
    return train(cfg, workdir)


def test_every_name_in_history_csv_and_tensorboard(frcnn_run):
    steps = 48 // 4
    for name in NAMES:
        assert len(frcnn_run.history[name]) == 3, name
        assert len(frcnn_run.history[f"val_{name}"]) == 3, name
    assert 0.0 <= frcnn_run.history["outside_share"][-1] < 0.5
    with open(frcnn_run.workdir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and set(NAMES) <= set(rows[0])
    tags = scalar_tags(frcnn_run.workdir / "logs" / "train")
    for name in NAMES:
        assert len(tags[f"batch_{name}"]) == 3 * steps, name
        assert len(tags[f"epoch_{name}"]) == 3, name
    assert "epoch_learning_rate" in tags or "epoch_learning_rate_fused_adam" in tags
    assert {f"epoch_{n}" for n in NAMES} <= set(scalar_tags(frcnn_run.workdir / "logs" / "validation"))


def test_losses_go_down_and_the_run_is_evaluated(frcnn_run):
    h = frcnn_run.history
    assert h["rpn_loss_cls"][-1] < h["rpn_loss_cls"][0]
    # the tiny classifier learns slowly: compare the very first batch with the last epoch
    first = scalar_tags(frcnn_run.workdir / "logs" / "train")["batch_class_loss_cls"][0]
    first = float(first.value) if hasattr(first, "value") else float(tensor_util.make_ndarray(first.tensor_proto))
    assert h["class_loss_cls"][-1] < first
    metrics = json.loads((frcnn_run.workdir / "metrics.json").read_text())
    assert set(metrics["bbox"]["per_class"]) == {"square", "circle", "triangle"}


def test_coco_evaluation_in_the_loop_prints_what_evaluate_py_prints(frcnn_run, tmp_path):
    run = frcnn_run.workdir
    assert len(frcnn_run.history["val_AP50"]) == 3 and "epoch_AP50" in scalar_tags(run / "logs" / "validation")
    result = tool("tools/evaluate.py", "--weights", run / "checkpoints" / "epoch_003.keras", "--out", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    for name in ("AP", "AP50", "AP75"):
        assert frcnn_run.history[f"val_{name}"][-1] == metrics["bbox"][name], name
        assert f"{name}={metrics['bbox'][name]:.3f}" in result.stdout
    for name, v in metrics["bbox"]["per_class"].items():
        assert frcnn_run.history[f"val_AP50_{name}"][-1] == v["AP50"], name


def test_resume_restores_both_optimizers(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    recipe = "faster_rcnn_resnet50_instant.yaml"
    train(tiny_cfg("train.epochs=1", "eval.after_training=false", recipe=recipe), tmp_path)
    resumed = train(tiny_cfg("train.epochs=2", "eval.after_training=false", recipe=recipe), tmp_path, resume=True)
    assert len(resumed.history["loss"]) == 1
    steps = 48 // 4
    assert int(resumed.model.rpn_optimizer.iterations.numpy()) == 2 * steps
    assert int(resumed.model.classifier_optimizer.iterations.numpy()) == 2 * steps
    with open(tmp_path / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]


def test_non_finite_loss_stops_the_loop_with_its_name(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    cfg = tiny_cfg("loss.weights={class_loss_regr: .nan}", "eval.after_training=false", recipe="faster_rcnn_vgg16_instant.yaml")
    with pytest.raises(TrainingError, match=r"loss 'class_loss_regr' became nan at epoch 1, batch 1"):
        train(cfg, tmp_path)
