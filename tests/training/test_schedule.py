"""train.schedule (warm-up + decay, biases from a higher rate), train.optimizer: auto and
decoupled weight decay that spares biases and normalisation parameters."""

import dataclasses
import math

import keras
import numpy as np
import pytest

from detectlab.config import load_config
from detectlab.errors import ConfigError
from detectlab.training.optimizers import (
    FusedAdam, FusedSGD, WarmupDecay, choose_optimizer, describe_schedule, make_optimizer, warmup_steps,
)
from tests.conftest import INSTANT


def rates(schedule, steps):
    return [float(schedule(s)) for s in steps]


def test_warmup_then_cosine_to_the_final_fraction():
    s = WarmupDecay(0.01, total_steps=110, warmup_steps=10, decay="cosine", final_fraction=0.1)
    # warm-up 0 -> 0.01 over 10 steps; then 100 steps of cosine from 0.01 to 0.001
    assert rates(s, [0, 5, 10, 60, 110, 200]) == pytest.approx([0.0, 0.005, 0.01, 0.001 + 0.009 * 0.5, 0.001, 0.001])
    assert float(s(35)) == pytest.approx(0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * 0.25)))


def test_linear_and_constant_decay():
    linear = WarmupDecay(0.002, total_steps=100, decay="linear", final_fraction=0.01)
    assert rates(linear, [0, 50, 100]) == pytest.approx([0.002, 0.002 * (1 - 0.99 * 0.5), 0.00002])
    constant = WarmupDecay(0.002, total_steps=100, warmup_steps=4)
    assert rates(constant, [1, 4, 99]) == pytest.approx([0.0005, 0.002, 0.002])


def test_biases_warm_up_from_the_bias_rate():
    s = WarmupDecay(0.01, total_steps=100, warmup_steps=10, decay="cosine", warmup_bias_rate=0.1)
    # YOLOv5: biases 0.1 -> the weights' rate over the warm-up, weights 0 -> it; equal afterwards
    assert float(s.bias_rate(0)) == pytest.approx(0.1)
    assert float(s.bias_rate(5)) == pytest.approx(0.005 + 0.05)
    assert float(s.bias_rate(10)) == pytest.approx(float(s(10)))
    assert float(s.bias_rate(50)) == pytest.approx(float(s(50)))


def test_the_optimizer_applies_the_bias_rate_to_biases_and_betas_only():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros"), keras.layers.BatchNormalization()])
    opt = FusedSGD(learning_rate=WarmupDecay(0.01, 100, warmup_steps=10, warmup_bias_rate=0.1), momentum=0.0)
    opt.build(model.trainable_variables)
    opt.apply_gradients([(np.ones(v.shape, np.float32), v) for v in model.trainable_variables])
    after = {v.path.split("/")[-1]: keras.ops.convert_to_numpy(v) for v in model.trainable_variables}
    # step 0: weights rate 0, biases/betas 0.1
    assert after["kernel"] == pytest.approx(np.zeros((2, 1)))
    assert after["bias"] == pytest.approx([-0.1])
    assert after["beta"] == pytest.approx([-0.1])
    assert after["gamma"] == pytest.approx([1.0])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weight_decay_is_decoupled_and_spares_biases_and_norm_parameters(optimizer):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="ones"),
                              keras.layers.BatchNormalization()])
    cfg = load_config(INSTANT / "yolov3_tiny_instant.yaml", [f"train.optimizer={optimizer}", "train.weight_decay=0.1", "train.lr=0.5"])
    opt = make_optimizer(cfg.train, cfg.train.lr, 10)
    assert isinstance(opt, FusedAdam if optimizer == "adam" else FusedSGD)
    opt.build(model.trainable_variables)
    opt.apply_gradients([(np.zeros(v.shape, np.float32), v) for v in model.trainable_variables])
    after = {v.path.split("/")[-1]: keras.ops.convert_to_numpy(v) for v in model.trainable_variables}
    assert after["kernel"] == pytest.approx(np.full((2, 1), 1 - 0.5 * 0.1))  # w -= lr * wd * w, gradient 0
    assert after["bias"] == pytest.approx([1.0]) and after["gamma"] == pytest.approx([1.0]) and after["beta"] == pytest.approx([0.0])


def test_auto_picks_adam_for_short_runs_and_sgd_for_long_ones():
    cfg = load_config(INSTANT / "yolov3_tiny_instant.yaml", ["train.optimizer=auto", "train.lr=0.001"])
    short = choose_optimizer(cfg.train, num_classes=1, steps=10_000)
    assert short.name == "adam" and short.rate_scale * 0.001 == pytest.approx(0.002) and not short.bias_warmup
    assert choose_optimizer(cfg.train, 80, 5000).rate_scale * 0.001 == pytest.approx(round(0.01 / 84, 6))
    long = choose_optimizer(cfg.train, 1, 10_001)
    assert (long.name, long.momentum) == ("sgd", 0.937) and long.rate_scale * 0.001 == pytest.approx(0.01)
    assert isinstance(make_optimizer(cfg.train, 0.001, 100, choice=long), FusedSGD)


def test_warmup_length_and_recipe_errors():
    cfg = load_config(INSTANT / "yolov3_tiny_instant.yaml", ["train.schedule={warmup_epochs: 3, warmup_steps: 100}"])
    assert warmup_steps(cfg.train, steps_per_epoch=20) == 100 and warmup_steps(cfg.train, steps_per_epoch=50) == 150
    with pytest.raises(ConfigError, match="train.lr_schedule: moved to train.schedule.decay"):
        load_config(INSTANT / "yolov3_tiny_instant.yaml", ["train.lr_schedule=cosine"])
    with pytest.raises(ConfigError, match="train.schedule.final_lr_fraction: expected in \\[0, 1\\]"):
        load_config(INSTANT / "yolov3_tiny_instant.yaml", ["train.schedule.final_lr_fraction=2"])
    plateau = load_config(INSTANT / "yolov3_tiny_instant.yaml", ["train.schedule.decay=cosine", "train.reduce_lr_on_plateau={}"])
    with pytest.raises(ConfigError, match="reduce_lr_on_plateau needs train.schedule.decay=constant"):
        make_optimizer(plateau.train, 0.001, 10)


def test_the_schedule_is_described_in_one_line():
    cfg = load_config(INSTANT / "yolov3_tiny_instant.yaml", [
        "train.optimizer=sgd", "train.schedule={warmup_epochs: 2, warmup_bias_lr: 0.1, decay: cosine, final_lr_fraction: 0.01}"])
    assert describe_schedule(cfg.train, 0.01, 100, steps_per_epoch=10) == \
        "linear warm-up from 0 over 20 steps (biases from 0.1), then cosine decay from 0.01 to 0.0001 over 80 steps"
    auto = choose_optimizer(dataclasses.replace(cfg.train, optimizer="auto"), num_classes=1, steps=100)  # Adam at 0.002
    assert describe_schedule(cfg.train, cfg.train.lr, 100, 10, auto).startswith("linear warm-up from 0 over 20 steps, then cosine decay from 0.002 to 2e-05")
    plateau = load_config(INSTANT / "yolov3_tiny_instant.yaml", ["train.reduce_lr_on_plateau={}"])
    assert describe_schedule(plateau.train, 0.003, 50) == "constant 0.003 (ReduceLROnPlateau may lower it)"
