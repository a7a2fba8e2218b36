"""Precision policies and ``tf.distribute`` strategies.

- ``float32``, ``mixed_bfloat16`` (fast on CPUs with AMX/AVX512-BF16 and on TPUs/Ampere+,
  several times *slower* than float32 on CPUs without them: oneDNN then converts in
  software), ``mixed_float16`` (GPUs; Keras wraps the optimizer in a ``LossScaleOptimizer``);
  ``auto`` picks one of them for the machine (:func:`resolve_precision`).
- ``none``: the default strategy; ``mirrored``: one replica per GPU, or, without GPUs,
  per logical CPU device (``train.mirrored_devices``, to exercise the same path on CPU);
  ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG``
  environment variable (one process per worker).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from detectlab.errors import ConfigError
from detectlab.utils import cpu_flags, log


@dataclass(frozen=True)
class Cluster:
    """This process's place in a ``TF_CONFIG`` cluster (one process, the chief, without one)."""

    workers: int = 1  # processes: chief + workers
    index: int = 0  # this process's position among them (0 for the chief)
    chief: bool = True  # the process that writes checkpoints and logs (the chief, else worker 0)

    @classmethod
    def from_environment(cls, environ=os.environ) -> Cluster:
        """Parse ``TF_CONFIG`` (JSON with ``cluster`` and ``task``) once."""
        text = environ.get("TF_CONFIG") or "{}"
        try:
            tf_config = json.loads(text)
            cluster, task = tf_config.get("cluster", {}), tf_config.get("task", {})
            chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
            kind, index = task.get("type"), int(task.get("index", 0))
        except (ValueError, AttributeError, TypeError) as exc:
            raise ConfigError(f"TF_CONFIG: not a cluster description ({exc}): {text[:80]}") from None
        position = chiefs + index if kind == "worker" else 0
        chief = not task or kind == "chief" or (kind == "worker" and index == 0 and not chiefs)
        return cls(workers=max(1, chiefs + workers), index=position, chief=chief)


# CPU flags (/proc/cpuinfo) of native bfloat16 arithmetic: x86 AMX / AVX512-BF16, Arm BF16
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
# oneDNN runs float16 only with these; elsewhere TensorFlow falls back to Eigen's converting kernels
NATIVE_FP16_CPU_FLAGS = ("avx512_fp16", "amx_fp16")


def cpu_has_native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    return not cpu_flags(cpuinfo).isdisjoint(NATIVE_BF16_CPU_FLAGS)


def resolve_precision(policy: str) -> str:
    """``auto`` -> ``mixed_float16`` on a GPU with tensor cores (compute capability >= 7),
    ``mixed_bfloat16`` on a CPU with native bfloat16, else ``float32``; other names as given."""
    if policy != "auto":
        return policy
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0)
        return "mixed_float16" if tuple(capability) >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"


def set_precision(policy: str) -> str:
    """Set Keras' global dtype policy (``auto`` resolved for this machine); returns it."""
    resolved = resolve_precision(policy)
    if policy == "auto":
        log.info("precision auto: %s on this machine", resolved)
    elif resolved == "mixed_bfloat16" and not tf.config.list_physical_devices("GPU") and not cpu_has_native_bfloat16():
        log.warning("precision mixed_bfloat16: this CPU has no native bfloat16 (%s), so it runs several times "
                    "slower than float32 here; 'auto' picks float32 on it", "/".join(NATIVE_BF16_CPU_FLAGS))
    elif resolved == "mixed_float16" and not tf.config.list_physical_devices("GPU") and cpu_flags().isdisjoint(NATIVE_FP16_CPU_FLAGS):
        log.warning("precision mixed_float16: this CPU has no native float16 (%s); TensorFlow emulates it, several "
                    "times slower than float32 (Mask R-CNN instant: 11.8 vs 2.4 s/step); it is meant for GPUs",
                    "/".join(NATIVE_FP16_CPU_FLAGS))
    keras.mixed_precision.set_dtype_policy(resolved)
    return resolved


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
