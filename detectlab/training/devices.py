"""Precision policies and ``tf.distribute`` strategies.

- ``float32``, ``mixed_bfloat16`` (fast on CPUs with AMX/AVX512-BF16 and on TPUs/Ampere+),
  ``mixed_float16`` (GPUs; Keras wraps the optimizer in a ``LossScaleOptimizer``).
- ``none``: the default strategy; ``mirrored``: one replica per GPU, or, without GPUs,
  per logical CPU device (``train.mirrored_devices``, to exercise the same path on CPU);
  ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG``
  environment variable (one process per worker).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from detectlab.errors import ConfigError
from detectlab.utils import log


def worker_count() -> int:
    """Processes in the ``TF_CONFIG`` cluster (chief + workers); 1 without one."""
    import json
    import os

    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def worker_index() -> int:
    """This process's position among chief + workers (0 for the chief)."""
    import json
    import os

    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task", {})
    if task.get("type") == "worker":
        return len(tf_config.get("cluster", {}).get("chief", [])) + int(task.get("index", 0))
    return 0


def is_chief() -> bool:
    """The process that writes checkpoints and logs (the chief, else worker 0)."""
    import json
    import os

    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task", {})
    if not task or task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in tf_config.get("cluster", {})


def set_precision(policy: str) -> None:
    keras.mixed_precision.set_dtype_policy(policy)


def make_strategy(kind: str, cpu_devices: int = 0) -> tf.distribute.Strategy:
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind != "mirrored":
        raise ConfigError(f"train.distribute: unknown strategy '{kind}'")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    count = max(2, cpu_devices)
    split_cpu(count)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:count]
    log.info("mirrored strategy on %d logical CPU devices", len(devices))
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def split_cpu(count: int) -> None:
    """Split the physical CPU into ``count`` logical devices (before TensorFlow starts)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current and len(current) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as exc:
        raise ConfigError(
            "train.distribute=mirrored on CPU must be chosen before TensorFlow runs anything "
            f"(start a new process): {exc}"
        ) from None
