"""Weight EMA: the averaging arithmetic with its warm ramp, what is evaluated and saved, and
resume (under fit, the alternating loop and a distribution strategy)."""

import math

import keras
import numpy as np
import pytest

from detectlab.training.ema import WeightEMA, raw_weights_path
from detectlab.training.runner import train
from detectlab.weights.by_name import read_keras_archive
from tests.conftest import INSTANT, tool


def test_average_with_warm_ramp_and_swaps():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")])
    ema = WeightEMA(decay=0.9, ramp_steps=2.0)
    ema.attach(model)
    expected = np.zeros(2)
    for step, value in enumerate([1.0, 2.0, 4.0], start=1):
        model.set_weights([np.full((1, 1), value, np.float32), np.full((1,), -value, np.float32)])
        ema.update()
        d = 0.9 * (1 - math.exp(-step / 2.0))
        assert ema.current_decay() == pytest.approx(d)
        expected = d * expected + (1 - d) * np.array([value, -value])
    assert [float(s.numpy().ravel()[0]) for s in ema.shadow] == pytest.approx(expected, rel=1e-6)
    ema.swap_in()
    assert [float(w.ravel()[0]) for w in model.get_weights()] == pytest.approx(expected, rel=1e-6)
    assert [float(w.ravel()[0]) for w in ema.raw_values()] == [4.0, -4.0]  # the training weights, kept aside
    ema.swap_out()
    assert [float(w.ravel()[0]) for w in model.get_weights()] == [4.0, -4.0]


def final_weights(result):
    return [keras.ops.convert_to_numpy(w) for w in result.model.weights]


def test_resume_puts_the_average_and_the_training_weights_back(tmp_path):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")])
    ema = WeightEMA(decay=0.5, ramp_steps=1.0)
    ema.attach(model)
    model.set_weights([np.full((1, 1), 2.0, np.float32), np.full((1,), 4.0, np.float32)])
    ema.update()
    ema.swap_in()  # what a checkpoint holds: the average; beside it, the training weights
    ema.save_raw(tmp_path / "epoch_001.raw.npz")
    averaged = model.get_weights()
    fresh = WeightEMA(decay=0.5, ramp_steps=1.0)
    fresh.attach(model)  # the resumed model, loaded from the checkpoint
    fresh.restore(*WeightEMA.read_raw(tmp_path / "epoch_001.raw.npz"))
    assert fresh.updates == 1 and not fresh.swapped
    assert [float(w.ravel()[0]) for w in model.get_weights()] == [2.0, 4.0]
    assert [float(s.numpy().ravel()[0]) for s in fresh.shadow] == pytest.approx([float(w.ravel()[0]) for w in averaged])


def test_checkpoints_hold_the_average_and_resume_counts_on(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    common = ("train.steps_per_epoch=3", "train.ema={decay: 0.99, ramp_steps: 4}", "eval.after_training=false")
    train(tiny_cfg("train.epochs=1", *common), tmp_path)
    resumed = train(tiny_cfg("train.epochs=2", *common), tmp_path, resume=True)
    # the model ends on the average, which is what last.keras holds; the training weights are beside it
    raw, updates = WeightEMA.read_raw(raw_weights_path(tmp_path / "checkpoints" / "epoch_002.keras"))
    assert updates == 6
    saved = list(_arrays(read_keras_archive(tmp_path / "checkpoints" / "last.keras")))
    kernel = next(i for i, w in enumerate(resumed.model.weights) if w.path.endswith("kernel"))
    averaged = final_weights(resumed)[kernel]
    assert any(v.shape == averaged.shape and np.array_equal(averaged, v) for v in saved)
    assert not np.allclose(averaged, raw[kernel])


def _arrays(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _arrays(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _arrays(v)
    else:
        yield np.asarray(tree)


def test_the_average_is_validated_and_saved_by_the_alternating_loop(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    cfg = tiny_cfg("train.epochs=1", "train.steps_per_epoch=2", "train.ema={decay: 0.9, ramp_steps: 1}",
                   "eval.after_training=false", recipe="faster_rcnn_vgg16_instant.yaml")
    result = train(cfg, tmp_path)
    assert np.isfinite(result.history["val_loss"][-1]) and "val_AP50" in result.history
    raw, updates = WeightEMA.read_raw(raw_weights_path(tmp_path / "checkpoints" / "epoch_001.keras"))
    assert updates == 2
    # the model (validated, evaluated and saved) holds the average, not the training weights
    assert any(not np.allclose(a, b) for a, b in zip(final_weights(result), raw))


@pytest.mark.slow  # a fresh process: the CPU is split into two devices before TensorFlow starts
def test_the_average_under_a_mirrored_strategy(tmp_path, shapes_dir):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    out = tool("tools/train.py", "--config", INSTANT / "yolov3_tiny_instant.yaml", "--workdir", tmp_path, "--epochs", "2",
               "--steps-per-epoch", "2", "--set", "train.distribute=mirrored", "--set", "train.mirrored_devices=2",
               "--set", "train.ema={decay: 0.9, ramp_steps: 1}", "--set", "eval.after_training=false", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mirrored strategy on 2 logical CPU devices" in out.stderr + out.stdout
    raw, updates = WeightEMA.read_raw(raw_weights_path(tmp_path / "checkpoints" / "epoch_002.keras"))
    assert updates == 4
    saved = list(_arrays(read_keras_archive(tmp_path / "checkpoints" / "last.keras")))
    assert all(np.all(np.isfinite(v)) for v in saved + raw if v.dtype.kind == "f")
    kernels = [v for v in raw if v.ndim == 4]
    assert any(not any(v.shape == k.shape and np.allclose(v, k) for v in saved) for k in kernels)
