"""The GPU precision path, on CPU: ``mixed_float16`` with loss scaling around the fused
optimizers. Each family trains a few steps with finite losses; a float16 overflow is
skipped by the loss scaler (weights untouched, scale halved), not reported as NaN.

float16 arithmetic is emulated on CPUs (oneDNN only runs it with AVX512-FP16 / AMX-FP16;
elsewhere TensorFlow falls back to Eigen's converting kernels), so these runs are slow per
FLOP: Mask R-CNN's is marked ``slow``.
"""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest

from detectlab.config import load_config
from detectlab.data.coco import load_coco
from detectlab.registry import MODELS
from detectlab.training.alternating import training_views
from detectlab.training.optimizers import FusedAdam
from detectlab.training.runner import make_generators, train
from tests.conftest import INSTANT, tool


@pytest.fixture
def float16_policy():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def test_float16_overflow_is_skipped_by_the_loss_scaler(float16_policy, tiny_cfg, shapes_dir):
    cfg = tiny_cfg("train.workers=0", "augment.enabled=false")
    family = MODELS.get("yolov3")
    gen, _ = make_generators(cfg, family, load_coco(shapes_dir / "instances_train.json"), None, 3)
    keras.utils.set_random_seed(0)
    model = family.build(cfg, 3, None)
    model.compile(optimizer=FusedAdam(learning_rate=1e-3))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # Keras wraps ours
    assert model.get_layer("darknet_conv_000").compute_dtype == "float16"
    for _ in range(8):  # steps that overflow at the start scale (2**15) are skipped until the scale fits
        model.train_on_batch(*gen[0], return_dict=True)
        if int(model.optimizer.iterations.numpy()):
            break
    assert int(model.optimizer.iterations.numpy()) == 1
    scale, steps = float(model.optimizer.dynamic_scale.numpy()), int(model.optimizer.iterations.numpy())
    before = [w.copy() for w in model.get_weights()]

    # a loss 1e6 times larger: finite in float32, but its scaled gradients overflow float16
    model.loss_weights["yolo_wh_loss"] = 1e6
    model.train_function = None
    logs = model.train_on_batch(*gen[1], return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["yolo_wh_loss"] > 1e3
    assert float(model.optimizer.dynamic_scale.numpy()) == scale / 2
    assert int(model.optimizer.iterations.numpy()) == steps
    trainable = {id(v) for v in model.trainable_variables}
    for w, b, v in zip(model.get_weights(), before, model.weights):
        if id(v) in trainable:
            np.testing.assert_array_equal(w, b, err_msg=v.path)

    model.loss_weights["yolo_wh_loss"] = 1.0
    model.train_function = None
    logs = model.train_on_batch(*gen[1], return_dict=True)
    assert np.isfinite(logs["loss"]) and int(model.optimizer.iterations.numpy()) == steps + 1
    assert not np.array_equal(model.get_layer("yolo_output_0").kernel.numpy(), before[[v.path for v in model.weights].index(model.get_layer("yolo_output_0").kernel.path)])


@pytest.mark.parametrize(
    "recipe",
    ["yolov3_tiny_instant.yaml", "faster_rcnn_vgg16_instant.yaml", pytest.param("mask_rcnn_r50_instant.yaml", marks=pytest.mark.slow)],
)
def test_each_family_trains_under_mixed_float16(recipe, tmp_path, shapes_dir):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    cfg = load_config(INSTANT / recipe, ["train.precision=mixed_float16", "train.epochs=2", "train.steps_per_epoch=4",
                                         "eval.after_training=false", "data.val=null",
                                         "data.shapes={train: 48, val: 16, size: 64, seed: 0}"])  # the shared dataset as written
    try:
        result = train(cfg, tmp_path)
        model = result.model
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.dtype_policy.name == "mixed_float16"
    losses = [k for k in result.history if "loss" in k]
    assert "loss" in losses and len(losses) > 3
    for name in losses:
        assert np.all(np.isfinite(result.history[name])), name
    if recipe.startswith("faster_rcnn"):  # the alternating views start their loss scale low
        assert float(training_views(model).classifier.optimizer.dynamic_scale.numpy()) == 2.0**10


@pytest.mark.slow
def test_mixed_float16_under_mirrored_strategy_on_two_cpu_devices(tmp_path, shapes_dir):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    out = tool("tools/train.py", "--config", INSTANT / "yolov3_tiny_instant.yaml", "--workdir", tmp_path, "--precision", "mixed_float16",
               "--epochs", "2", "--set", "train.distribute=mirrored", "--set", "eval.after_training=false", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mirrored strategy on 2 logical CPU devices" in out.stderr + out.stdout
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for name in ("loss", "yolo_xy_loss", "yolo_wh_loss", "yolo_confidence_loss", "yolo_class_loss"):
        assert all(np.isfinite(float(r[name])) for r in rows), name
