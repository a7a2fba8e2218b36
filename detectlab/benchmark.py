"""Measurements behind ``tools/benchmark.py`` (honest numbers, stated conditions).

- ``forward_flops``: 2 x multiply-adds of every convolution / matmul op in the traced
  training-mode forward graph, at the shapes they run at on a real batch, per image.
- ``matmul_flops_per_second``: median rate of a 2048^3 ``tf.matmul`` in the given dtype.
- ``timed_steps``: ``train_on_batch`` wall times after warm-up, on real batches from the
  family's generator (augmented, target-encoded) over JPEG files, and the cores kept busy.
- MFU = 3 x forward FLOPs per image x images/s / matmul FLOP/s (same run, same precision).
- ``export_ms_per_image``: median latency of one image through each export format.
- ``profile_steps`` / ``op_self_times``: a TensorFlow profiler trace of training steps (what
  TensorBoard's profile plugin shows) and the ops that took the time, by self time.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from detectlab.training.devices import cpu_has_native_bfloat16
from detectlab.utils import cpu_flags

# the CPU features that decide convolution and bfloat16 speed, recorded with every measurement
SPEED_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")

FLOP_OPS = {"Conv2D", "MatMul", "BatchMatMulV2", "BatchMatMulV3", "Conv2DBackpropInput", "DepthwiseConv2dNative", "_FusedConv2D", "_FusedMatMul"}


def forward_flops(model, inputs) -> float:
    """FLOPs per image of ``model(inputs, training=True)`` on a real batch (array, list or
    dict, batch first). The forward graph is traced once; every convolution / matmul op's
    operand shapes are read back while it runs, so ops whose shapes depend on the data
    (sampled ROIs, positive-only mask heads) are counted at the size they really ran at."""
    probed: list = []  # (op type, attrs) per FLOP op, in the order of the shapes returned

    @tf.function
    def probe(x):
        model(x, training=True)
        shapes = []
        for op in tf.compat.v1.get_default_graph().get_operations():
            if op.type in FLOP_OPS:
                attrs = {k: op.get_attr(k) for k in ("transpose_a", "transpose_b", "adj_x") if k in op.node_def.attr}
                probed.append((op.type, attrs))
                shapes.append([tf.shape(t) for t in (*op.inputs, op.outputs[0])])
        return shapes

    shapes = probe(inputs)
    total = sum(_op_flops(kind, attrs, [list(np.asarray(s)) for s in op_shapes]) for (kind, attrs), op_shapes in zip(probed, shapes))
    first = inputs if not isinstance(inputs, dict) else inputs["images"]
    first = first[0] if isinstance(first, (list, tuple)) else first
    return total / len(first)


def _op_flops(kind: str, attrs: dict, shapes: list) -> float:
    """FLOPs of one op from its input shapes and (last) output shape."""
    out = shapes[-1]
    if kind in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative"):
        kh, kw, cin, _ = shapes[1]
        if kind == "DepthwiseConv2dNative":
            return 2.0 * np.prod(out) * kh * kw
        return 2.0 * np.prod(out) * kh * kw * cin
    if kind == "Conv2DBackpropInput":  # transposed convolution: input grad of a conv
        kh, kw, cout, _ = shapes[1]  # filter (h, w, out_of_transposed, in)
        return 2.0 * np.prod(shapes[2]) * kh * kw * cout  # the smaller tensor, (N, H, W, cin)
    a, b = shapes[0], shapes[1]
    if kind in ("MatMul", "_FusedMatMul"):
        m, k = (a[1], a[0]) if attrs.get("transpose_a") else (a[0], a[1])
        n = b[0] if attrs.get("transpose_b") else b[1]
        return 2.0 * m * k * n
    k = a[-2] if attrs.get("adj_x") else a[-1]  # batched matmul: (..., m, n) contracting k
    return 2.0 * np.prod(out) * k


def matmul_flops_per_second(dtype: str, size: int = 2048, repeats: int = 10) -> float:
    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    fn = tf.function(lambda: tf.matmul(a, b))
    fn().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn().numpy()
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / statistics.median(times)


def timed_steps(step, batches, warmup: int = 3, steps: int = 10) -> tuple[list[float], float]:
    """Wall times of ``step(batch, index)`` after ``warmup`` untimed calls, and the cores
    this process kept busy meanwhile (CPU time over wall time: below the core count when
    other processes took the CPU, or the step left cores idle)."""
    for i in range(warmup):
        step(batches[i % len(batches)], i)
    times = []
    cpu_start, wall_start = _process_cpu_seconds(), time.perf_counter()
    for i in range(steps):
        batch = batches[(warmup + i) % len(batches)]
        start = time.perf_counter()
        step(batch, warmup + i)
        times.append(time.perf_counter() - start)
    busy = (_process_cpu_seconds() - cpu_start) / max(time.perf_counter() - wall_start, 1e-9)
    return times, round(busy, 2)


def _process_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def profile_steps(step, batches, log_dir, steps: int = 3, first_index: int = 0) -> Path:
    """Run ``steps`` calls of ``step(batch, index)`` under the TensorFlow profiler. The trace
    goes to ``log_dir/plugins/profile/<run>/<host>.xplane.pb`` (``tensorboard --logdir
    log_dir`` with the profile plugin shows it); returns that file."""
    import tensorflow as tf

    log_dir = Path(log_dir)
    before = set(log_dir.rglob("*.xplane.pb"))
    tf.profiler.experimental.start(str(log_dir))
    try:
        for i in range(steps):
            step(batches[(first_index + i) % len(batches)], first_index + i)
    finally:
        tf.profiler.experimental.stop()
    written = sorted(set(log_dir.rglob("*.xplane.pb")) - before, key=lambda p: p.stat().st_mtime)
    if not written:
        raise RuntimeError(f"the TensorFlow profiler wrote no trace under {log_dir}")
    return written[-1]


@dataclass
class OpTime:
    name: str  # the op's name in the graph, e.g. "model/res2a_branch2a/Conv2D"
    type: str  # its op type, e.g. "Conv2D"
    self_seconds: float  # summed over calls and threads, minus the ops nested inside it
    calls: int


def op_self_times(xplane_path) -> list[OpTime]:
    """Every TensorFlow op of a profiler trace (``.xplane.pb``) with its self time, largest
    first. Op events are those named ``"<op name>:<op type>"`` on the host's threads; an op's
    self time is its wall time on its thread minus the op events nested inside it (a function
    call or loop runs its ops inside its own event). Times add over threads, so on a CPU
    running ops in parallel they can sum to more than the step's wall time."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(xplane_path).read_bytes())
    totals: dict[tuple[str, str], list] = {}
    for plane in space.planes:
        metadata = plane.event_metadata
        for line in plane.lines:
            ops = []
            for event in line.events:
                md = metadata[event.metadata_id]
                if md.display_name and md.name.endswith(":" + md.display_name):
                    start = line.timestamp_ns * 1000 + event.offset_ps
                    ops.append((start, start + event.duration_ps, md.name[: -len(md.display_name) - 1], md.display_name))
            ops.sort(key=lambda op: (op[0], -op[1]))
            open_ops: list[list] = []  # [end, key, nested time] of the enclosing ops
            for start, end, name, kind in ops:
                while open_ops and open_ops[-1][0] <= start:
                    _close(open_ops.pop(), totals)
                if open_ops:
                    open_ops[-1][2] += end - start
                open_ops.append([end, (name, kind), 0, end - start])
            while open_ops:
                _close(open_ops.pop(), totals)
    times = [OpTime(name, kind, ps / 1e12, calls) for (name, kind), (ps, calls) in totals.items()]
    return sorted(times, key=lambda t: -t.self_seconds)


def _close(op: list, totals: dict) -> None:
    _, key, nested, duration = op
    entry = totals.setdefault(key, [0, 0])
    entry[0] += max(duration - nested, 0)
    entry[1] += 1


def top_ops(times: list[OpTime], steps: int, count: int = 15) -> dict:
    """The largest self times per step: by op type and by op, as ``[name, (type,) ms, share]``
    rows (share of all ops' self time)."""
    total = sum(t.self_seconds for t in times) or 1.0
    by_type: dict[str, float] = {}
    for t in times:
        by_type[t.type] = by_type.get(t.type, 0.0) + t.self_seconds
    types = sorted(by_type.items(), key=lambda kv: -kv[1])[:count]
    return {
        "ops_self_ms_per_step": round(total * 1000 / steps, 1),
        "top_op_types": [[kind, round(s * 1000 / steps, 1), round(s / total, 3)] for kind, s in types],
        "top_ops": [[t.name, t.type, round(t.self_seconds * 1000 / steps, 1), round(t.self_seconds / total, 3)]
                    for t in times[:count]],
    }


def format_top_ops(summary: dict, title: str) -> str:
    """``top_ops`` as two plain-text tables."""
    lines = [f"{title}: {summary['ops_self_ms_per_step']} ms of op self time per step (summed over threads)",
             f"  {'ms/step':>9} {'share':>6}  op type"]
    lines += [f"  {ms:9.1f} {share:6.1%}  {kind}" for kind, ms, share in summary["top_op_types"]]
    lines.append(f"  {'ms/step':>9} {'share':>6}  op (type)")
    lines += [f"  {ms:9.1f} {share:6.1%}  {name} ({kind})" for name, kind, ms, share in summary["top_ops"]]
    return "\n".join(lines)


class StepClock(keras.callbacks.Callback):
    """Wall time between consecutive training batches, as the trainer's loop sees them."""

    def __init__(self):
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        if not self.ends:
            self.ends.append(time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())

    def step_times(self, warmup: int) -> list[float]:
        return list(np.diff(self.ends))[warmup:]


def loader_rate(generator, batches: int, workers: int) -> float:
    """Images/s delivered by ``workers`` processes (0: in this process)."""
    indices = [i % len(generator) for i in range(batches)]
    start = time.perf_counter()
    if workers == 0:
        images = sum(_batch_size(generator[i]) for i in indices)
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            images = sum(_batch_size(b) for b in pool.imap(generator.__getitem__, indices))
    return images / (time.perf_counter() - start)


def _batch_size(batch) -> int:
    x = batch[0]
    return len(next(iter(x.values())) if isinstance(x, dict) else x)


def inference_ms_per_image(predictor, image_size: int, batch: int = 1, repeats: int = 10) -> float:
    x = tf.random.uniform((batch, image_size, image_size, 3), 0, 255)
    predictor._run(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        {k: v.numpy() for k, v in predictor._run(x).items()}
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / batch


def _median_ms(call, repeats: int) -> float:
    call()  # warm-up (graph building, allocation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def export_ms_per_image(model, image_size: int, score: float, nms: float, max_detections: int,
                        formats=("saved_model", "tflite", "onnx"), repeats: int = 10) -> dict:
    """``{"<format>_ms_per_image": ms}``: one ``image_size`` square image, batch 1, median of
    ``repeats``. SavedModel and ONNX take the uint8 image (letterbox, un-letterbox in-graph);
    TFLite (YOLO only; float32, float16, int8 calibrated on the image itself) the letterboxed
    float input. Formats that do not apply (TFLite for R-CNNs, ONNX without tf2onnx) are left out."""
    import tempfile
    from pathlib import Path

    from detectlab.data.shapes import draw_image
    from detectlab.errors import ExportError
    from detectlab.inference import export as ex

    image, _ = draw_image(image_size, np.random.default_rng(0))
    x = image[None].astype(np.float32)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved = ex.export_saved_model(model, Path(tmp) / "sm", image_size, score, nms, max_detections)
        if "saved_model" in formats:
            serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
            out["saved_model_ms_per_image"] = _median_ms(lambda: {k: v.numpy() for k, v in serve(image=tf.constant(image)).items()}, repeats)
        if "tflite" in formats:
            for dtype in ex.TFLITE_TYPES:
                try:
                    content = ex.tflite_bytes(model, image_size, score, nms, max_detections, dtype, [x[0]])
                except ExportError:  # not a YOLO model
                    break
                runner = ex.TfliteDetector(content, image_size).runner
                out[f"tflite_{dtype}_ms_per_image"] = _median_ms(lambda: runner(x=x), repeats)
        if "onnx" in formats:
            try:
                detect = ex.onnx_detector(ex.export_onnx(saved, Path(tmp) / "model.onnx"))
            except (ExportError, ImportError):
                detect = None
            if detect is not None:
                out["onnx_ms_per_image"] = _median_ms(lambda: detect(image), repeats)
    return out


def cpu_times() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq
    steal ...), in clock ticks; empty where it is absent."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return []


def steal_share(before: list[int], after: list[int]) -> float | None:
    """Share of CPU time the hypervisor took from this machine between two
    :func:`cpu_times` readings (a busy host slows every measurement taken meanwhile)."""
    if len(before) < 8 or len(after) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])
    return round((after[7] - before[7]) / total, 3) if total > 0 else None


def conditions() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "cpu_native_bfloat16": cpu_has_native_bfloat16(),
        "cpu_flags": [flag for flag in SPEED_CPU_FLAGS if flag in cpu_flags()],
    }
