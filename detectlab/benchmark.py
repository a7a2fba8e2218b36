"""Measurements behind ``tools/benchmark.py`` (honest numbers, stated conditions).

- ``forward_flops``: 2 x multiply-adds of every convolution / matmul op in the traced
  training-mode forward graph (static shapes), per image.
- ``matmul_flops_per_second``: median rate of a 2048^3 ``tf.matmul`` in the given dtype.
- ``training_step_times``: ``train_on_batch`` wall times after warm-up, on real batches
  from the family's generator (augmented, target-encoded) over JPEG files.
- MFU = 3 x forward FLOPs per image x images/s / matmul FLOP/s (same run, same precision).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

FLOP_OPS = {"Conv2D", "MatMul", "BatchMatMulV2", "BatchMatMulV3", "Conv2DBackpropInput", "DepthwiseConv2dNative", "_FusedConv2D", "_FusedMatMul"}


def forward_flops(model, *input_shapes) -> float:
    """FLOPs per image of ``model(inputs, training=True)`` for the given input shapes
    (the first dimension of the first is the batch)."""
    specs = [tf.TensorSpec(shape, tf.float32) for shape in input_shapes]
    fn = tf.function(lambda *x: model(list(x) if len(x) > 1 else x[0], training=True))
    graph = fn.get_concrete_function(*specs).graph
    total = sum(_op_flops(op) for op in _all_ops(graph) if op.type in FLOP_OPS)
    return total / input_shapes[0][0]


def _all_ops(graph):
    yield from graph.get_operations()
    for function in getattr(graph, "_functions", {}).values():  # nested functions (rare)
        fn_graph = getattr(function, "graph", None)
        if fn_graph is not None:
            yield from fn_graph.get_operations()


def _op_flops(op) -> float:
    def shape(t):
        return [int(d) if d is not None else 0 for d in t.shape.as_list()]

    if op.type in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative"):
        out = shape(op.outputs[0])
        kh, kw, cin, cout = shape(op.inputs[1])
        if op.type == "DepthwiseConv2dNative":
            return 2.0 * np.prod(out) * kh * kw
        return 2.0 * np.prod(out) * kh * kw * cin
    if op.type == "Conv2DBackpropInput":  # transposed convolution: input grad of a conv
        kh, kw, cout, cin = shape(op.inputs[1])  # filter (h, w, out_of_transposed, in)
        grad = shape(op.inputs[2])  # the smaller tensor, (N, H, W, cin)
        return 2.0 * np.prod(grad) * kh * kw * cout
    a, b = shape(op.inputs[0]), shape(op.inputs[1])
    if op.type in ("MatMul", "_FusedMatMul"):
        m, k = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
        n = b[0] if op.get_attr("transpose_b") else b[1]
        return 2.0 * m * k * n
    out = shape(op.outputs[0])  # batched matmul: (..., m, n) with contraction k
    adj_a = op.get_attr("adj_x")
    k = a[-2] if adj_a else a[-1]
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


def training_step_times(step, batches, warmup: int = 3, steps: int = 10) -> list[float]:
    """Wall times of ``step(batch, index)`` after ``warmup`` untimed calls."""
    for i in range(warmup):
        step(batches[i % len(batches)], i)
    times = []
    for i in range(steps):
        batch = batches[(warmup + i) % len(batches)]
        start = time.perf_counter()
        step(batch, warmup + i)
        times.append(time.perf_counter() - start)
    return times


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
    }
