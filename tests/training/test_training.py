"""Training through the runner on the instant recipe: losses logged everywhere, loss goes
down, checkpoints resume at the right epoch, non-finite losses stop with their name."""

import csv
import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from detectlab.errors import TrainingError
from detectlab.training.runner import train

LOSSES = ["yolo_xy_loss", "yolo_wh_loss", "yolo_confidence_loss", "yolo_class_loss"]


def scalar_tags(directory):
    acc = EventAccumulator(str(directory), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    return {tag: acc.Tensors(tag) for tag in tags.get("tensors", [])} | {tag: acc.Scalars(tag) for tag in tags.get("scalars", [])}


@pytest.fixture
def trained(trained_run):
    return trained_run


def test_every_named_loss_reaches_history_csv_and_tensorboard(trained):
    for name in LOSSES + ["loss", "l2_loss", "learning_rate"]:
        assert len(trained.history[name]) == 4, name
    for name in LOSSES:
        assert len(trained.history[f"val_{name}"]) == 4
    with open(trained.workdir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert set(LOSSES + ["loss", "learning_rate", "val_loss"]) <= set(rows[0])
    train_tags = scalar_tags(trained.workdir / "logs" / "train")
    for name in LOSSES + ["loss", "learning_rate"]:
        assert len(train_tags[f"epoch_{name}"]) == 4, name
        assert len(train_tags[f"batch_{name}"]) == 4 * 6, name  # 48 images / batch 8, every batch
    val_tags = scalar_tags(trained.workdir / "logs" / "validation")
    assert all(f"epoch_{name}" in val_tags for name in LOSSES)


def test_loss_goes_down_and_outputs_are_written(trained):
    loss = trained.history["loss"]
    assert loss[-1] < 0.5 * loss[0]
    assert trained.history["yolo_confidence_loss"][-1] < trained.history["yolo_confidence_loss"][0]
    for name in ("config.yaml", "metrics.json", "detections.json", "predictions.jpg", "checkpoints/last.keras", "checkpoints/best.keras"):
        assert (trained.workdir / name).is_file(), name
    metrics = json.loads((trained.workdir / "metrics.json").read_text())
    assert 0.0 <= metrics["bbox"]["AP50"] <= 1.0 and set(metrics["bbox"]["per_class"]) == {"square", "circle", "triangle"}
    state = json.loads((trained.workdir / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 4 and state["checkpoint"] == "epoch_004.keras"
    assert sorted(p.name for p in (trained.workdir / "checkpoints").glob("epoch_*.keras")) == ["epoch_003.keras", "epoch_004.keras"]


def test_resume_continues_at_the_right_epoch_with_optimizer_state(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    first = train(tiny_cfg("train.epochs=1", "eval.after_training=false"), tmp_path)
    assert len(first.history["loss"]) == 1
    resumed = train(tiny_cfg("train.epochs=3", "eval.after_training=false"), tmp_path, resume=True)
    assert len(resumed.history["loss"]) == 2  # epochs 2 and 3 only
    assert int(resumed.model.optimizer.iterations.numpy()) == 3 * 6  # steps continue from the checkpoint
    with open(tmp_path / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]
    batch_steps = [e.step for e in scalar_tags(tmp_path / "logs" / "train")["batch_loss"]]
    assert sorted(batch_steps) == list(range(1, 19))  # TensorBoard steps (from 1) continue too


def test_stages_train_the_right_layers_in_order(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    cfg = tiny_cfg("train.stages=[{layers: heads, epochs: 1, lr: 0.01}, {layers: all, epochs: 1, lr: 0.001}]", "eval.after_training=false")
    result = train(cfg, tmp_path)
    assert result.history["learning_rate"] == pytest.approx([0.01, 0.001])
    assert result.model.get_layer("darknet_conv_000").trainable  # the last stage trains everything
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and state["stage"] == 1


def test_non_finite_loss_stops_with_its_name_and_writes_no_checkpoint(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    cfg = tiny_cfg("loss.weights={yolo_wh_loss: .nan}", "eval.after_training=false")
    with pytest.raises(TrainingError, match=r"loss 'yolo_wh_loss' became nan at epoch 1, batch 1; no checkpoint was written"):
        train(cfg, tmp_path)
    assert not (tmp_path / "checkpoints" / "last.keras").exists()


def test_fit_generator_with_workers_steps_and_class_weight(shapes_dir, tiny_cfg):
    import keras

    from detectlab.data.coco import load_coco
    from detectlab.registry import MODELS
    from detectlab.training.fit_generator import fit_generator
    from detectlab.training.runner import make_generators

    cfg = tiny_cfg()
    family = MODELS.get("yolov3")
    data = load_coco(shapes_dir / "instances_train.json")
    train_gen, _ = make_generators(cfg, family, data, None, 3)
    model = family.build(cfg, 3, None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = fit_generator(model, train_gen, steps_per_epoch=3, epochs=2, workers=2, use_multiprocessing=True,
                            class_weight={0: 1.0, 2: 4.0}, verbose=0)
    assert len(history.history["yolo_class_loss"]) == 2
    np.testing.assert_array_equal(model.criterion.class_weights, [1.0, 1.0, 4.0])
    assert int(model.optimizer.iterations.numpy()) == 6
