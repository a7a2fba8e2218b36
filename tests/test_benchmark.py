"""FLOP counting behind tools/benchmark.py's MFU: hand-computed cases, including an op whose
shape depends on the data (as in Mask R-CNN's positive-ROI mask head)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detectlab.benchmark import conditions, cpu_times, forward_flops, steal_share
from detectlab.training.devices import cpu_has_native_bfloat16


def test_conv_and_dense_flops_per_image():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(x))
    conv = 2 * 8 * 8 * 4 * (3 * 3 * 3)
    dense = 2 * (8 * 8 * 4) * 5
    assert forward_flops(model, np.zeros((2, 8, 8, 3), np.float32)) == pytest.approx(conv + dense)


def test_ops_with_data_dependent_shapes_count_what_ran():
    dense = keras.layers.Dense(6)
    dense.build((None, 4))

    def model(x, training=False):  # keeps the rows whose first value is positive
        return dense(tf.boolean_mask(x, x[:, 0] > 0))

    x = np.array([[1, 0, 0, 0], [2, 0, 0, 0], [-1, 0, 0, 0], [3, 0, 0, 0]], np.float32)
    assert forward_flops(model, x) == pytest.approx(2 * 3 * 4 * 6 / 4)


def test_host_steal_share_between_two_readings():
    # user nice system idle iowait irq softirq steal (clock ticks)
    before = [100, 0, 20, 300, 0, 0, 0, 10]
    after = [160, 0, 30, 320, 0, 0, 0, 40]  # 120 ticks passed, 30 of them stolen
    assert steal_share(before, after) == 0.25
    assert steal_share([], after) is None
    now = cpu_times()  # this machine's /proc/stat, where there is one
    if now:
        share = steal_share(now, cpu_times())
        assert share is None or 0.0 <= share <= 1.0


def test_conditions_say_whether_the_cpu_has_native_bfloat16():
    assert conditions()["cpu_native_bfloat16"] is cpu_has_native_bfloat16()
