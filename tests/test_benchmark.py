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


def _xplane(path, events_by_line):
    """An XSpace file with one host plane; ``events_by_line``: per thread, ``(name, type,
    start us, duration us)`` (``type`` None for a non-op event)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    ids = {}
    for number, events in enumerate(events_by_line):
        line = plane.lines.add(name=f"tf_Compute/{number}", timestamp_ns=1000)
        for name, kind, start, duration in events:
            key = f"{name}:{kind}" if kind else name
            if key not in ids:
                ids[key] = len(ids) + 1
                plane.event_metadata[ids[key]].id = ids[key]
                plane.event_metadata[ids[key]].name = key
                plane.event_metadata[ids[key]].display_name = kind or ""
            line.events.add(metadata_id=ids[key], offset_ps=start * 1_000_000, duration_ps=duration * 1_000_000)
    path.write_bytes(space.SerializeToString())
    return path


def test_op_self_times_subtract_nested_ops_and_add_threads(tmp_path):
    from detectlab.benchmark import op_self_times, top_ops

    path = _xplane(tmp_path / "t.xplane.pb", [
        [("ExecutorState::Process", None, 0, 100),  # not an op: ignored, its ops still count
         ("loop/while", "While", 0, 50), ("loop/body/conv", "Conv2D", 10, 20), ("loop/body/relu", "Relu", 35, 5),
         ("conv2", "Conv2D", 60, 30)],
        [("conv2", "Conv2D", 0, 10)],  # the same op on another thread (a second call)
    ])
    times = {t.name: t for t in op_self_times(path)}
    assert set(times) == {"loop/while", "loop/body/conv", "loop/body/relu", "conv2"}
    assert times["loop/while"].self_seconds == pytest.approx(25e-6)  # 50 - 20 - 5
    assert times["conv2"].self_seconds == pytest.approx(40e-6) and times["conv2"].calls == 2
    summary = top_ops(list(times.values()), steps=1, count=2)
    assert summary["ops_self_ms_per_step"] == pytest.approx(0.1)
    assert summary["top_op_types"] == [["Conv2D", 0.1, 0.667], ["While", 0.0, 0.278]]  # of 90 us
    assert summary["top_ops"][0][:2] == ["conv2", "Conv2D"]


def test_profile_steps_write_a_tensorboard_trace_of_the_steps(tmp_path):
    from detectlab.benchmark import op_self_times, profile_steps

    a = tf.random.normal((256, 256))
    matmul = tf.function(lambda x: tf.reduce_sum(tf.matmul(x, x)))
    matmul(a)
    trace = profile_steps(lambda batch, index: matmul(batch).numpy(), [a], tmp_path, steps=2)
    assert trace.parent.parent.name == "profile" and trace.parent.parent.parent.name == "plugins"
    kinds = {t.type: t for t in op_self_times(trace)}
    assert kinds.get("MatMul", kinds.get("_MklMatMul")) is not None, sorted(kinds)


def test_peer_comparison_takes_the_mean_of_each_side_and_checks_the_target():
    from tools.peer_benchmark import comparison

    def run(workload, precision, side, ips, flops):
        return (workload, precision, side, {"status": "ok", "img_per_s": ips, "fwd_gflops_per_img": flops})

    runs = [run("yolov3", "fp32", "peer", 1.0, 65.86), run("yolov3", "fp32", "detectlab", 1.3, 65.86),
            run("yolov3", "fp32", "detectlab", 1.5, 65.86), run("yolov3", "fp32", "peer", 1.0, None),
            run("maskrcnn", "bf16", "peer", 0.4, 366.6), run("maskrcnn", "bf16", "detectlab", 0.5, 272.2),
            ("maskrcnn", "bf16", "detectlab", {"status": "failed"}), run("maskrcnn", "bf16", "peer", 0.4, 366.6)]
    rows = comparison(runs).splitlines()[2:]
    # YOLOv3: images/s 1.4 / 1.0 against 1.3x; Mask R-CNN: 3 x 272.2 x 0.5 = 408 against 3 x 366.6 x 0.4 = 440 GFLOP/s
    assert rows[0].split(" | ")[2:5] == ["1.000", "1.400", "1.40x"] and rows[0].endswith("| yes |")
    assert rows[1].split(" | ")[5:8] == ["440", "408", "0.93x"] and rows[1].endswith("| no |")


def test_peer_benchmark_names_a_missing_peer_interpreter(tmp_path):
    from tests.conftest import tool

    result = tool("tools/peer_benchmark.py", "--peer-python", tmp_path / "none", "--peer-script", tmp_path / "none.py")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: --peer-python {tmp_path / 'none'}: no such file"]
