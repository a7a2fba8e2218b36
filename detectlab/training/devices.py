"""Precision policies and ``tf.distribute`` strategies.

- ``float32``, ``mixed_bfloat16`` (fast on CPUs with AMX/AVX512-BF16 and on TPUs/Ampere+,
  several times *slower* than float32 on CPUs without them: oneDNN then converts in
  software), ``mixed_float16`` (GPUs; Keras wraps the optimizer in a ``LossScaleOptimizer``);
  ``auto`` picks one of them for the machine (:func:`resolve_precision`).
- ``none``: the default strategy; ``mirrored``: one replica per GPU, or, without GPUs,
  per logical CPU device (``train.mirrored_devices``, to exercise the same path on CPU);
  ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG``
  environment variable (one process per worker).

A multi-worker run is held together by TensorFlow's coordination service (on the chief):
the workers must all join within ``train.cluster_timeout`` seconds, a worker that stops
sending heartbeats (killed, crashed, unplugged) ends the run on the others within about
ten seconds, and every error names the worker and its address (:meth:`Cluster.explain`).
A process that has joined a cluster must leave it with :func:`leave_cluster` (what the
command-line tools do): TensorFlow's own teardown can wait forever for a chief that has
already gone.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field

import keras
import tensorflow as tf

from detectlab.errors import ClusterError, ConfigError
from detectlab.utils import cpu_flags, log


@dataclass(frozen=True)
class Cluster:
    """This process's place in a ``TF_CONFIG`` cluster (one process, the chief, without one)."""

    workers: int = 1  # processes: chief + workers
    index: int = 0  # this process's position among them (0 for the chief)
    chief: bool = True  # the process that writes checkpoints and logs (the chief, else worker 0)
    # per position: TensorFlow's task name ("/job:worker/replica:0/task:1") and "host:port"
    tasks: tuple[str, ...] = field(default=(), compare=False)
    addresses: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_environment(cls, environ=os.environ) -> Cluster:
        """Parse ``TF_CONFIG`` (JSON with ``cluster`` and ``task``) once."""
        text = environ.get("TF_CONFIG") or "{}"
        try:
            tf_config = json.loads(text)
            cluster, task = tf_config.get("cluster", {}), tf_config.get("task", {})
            chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
            kind, index = task.get("type"), int(task.get("index", 0))
        except (ValueError, AttributeError, TypeError) as exc:
            raise ConfigError(f"TF_CONFIG: not a cluster description ({exc}): {text[:80]}") from None
        position = len(chiefs) + index if kind == "worker" else 0
        chief = not task or kind == "chief" or (kind == "worker" and index == 0 and not chiefs)
        tasks = tuple(f"/job:{job}/replica:0/task:{i}" for job, hosts in (("chief", chiefs), ("worker", workers))
                      for i in range(len(hosts)))
        return cls(workers=max(1, len(chiefs) + len(workers)), index=position, chief=chief, tasks=tasks,
                   addresses=tuple(str(a) for a in chiefs + workers))

    def name(self, position: int) -> str:
        """``"worker 1 (10.0.0.2:12345)"``: a position as the log names it."""
        job, _, task = self.tasks[position].split("/")[1:]
        return f"{job.split(':')[1]} {task.split(':')[1]} ({self.addresses[position]})"

    def explain(self, exc: BaseException, timeout: float) -> str:
        """One line for a TensorFlow error of the cluster: what happened, to which worker."""
        text = str(getattr(exc, "message", exc))
        mentioned = []
        for job, task in re.findall(r"/job:(chief|worker)(?:/replica:\d+)?/task:(\d+)", text):
            position = self.tasks.index(f"/job:{job}/replica:0/task:{task}") if self.tasks else -1
            if position >= 0 and position != self.index and position not in mentioned:
                mentioned.append(position)
        names = ", ".join(self.name(p) for p in mentioned) or (self.name(0) if self.tasks else "another worker")
        if "Wait_for_all_tasks_to_register" in text or ("RegisterTask" in text and "eadline" in text):
            return (f"multi_worker: {names} did not join the cluster within {timeout:g} s (train.cluster_timeout); "
                    f"start every worker with the same TF_CONFIG, and check the address can be reached from here")
        if "heartbeat" in text or "unhealthy" in text:
            return f"multi_worker: {names} stopped (no heartbeat): the run stops; restart every worker with --resume"
        return f"multi_worker: lost contact with {names} ({_reason(text, exc)}); restart every worker with --resume"


def _reason(text: str, exc: BaseException) -> str:
    """The first line of a TensorFlow error that says what happened (not its "Graph execution
    error:" heading, the "Detected at node" call stack or a ``{{function_node ...}}`` tag)."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    skip = ("Graph execution error", "Detected at node", "File \"")
    lines = (line.strip() for line in text.splitlines())
    return next((line for line in lines if line and not line.startswith(skip)), type(exc).__name__)[:160]


_CLUSTER_JOINED = False  # this process started a multi-worker TensorFlow server (leave with leave_cluster)


def leave_cluster(code: int) -> None:
    """End a process that joined a multi-worker cluster now, with exit ``code`` (streams
    flushed, loader processes killed): TensorFlow's own teardown may wait forever for a chief
    that already left. Returns (does nothing) in a process that joined none."""
    if not _CLUSTER_JOINED:
        return
    import logging
    import multiprocessing

    # os._exit skips multiprocessing's exit handler, so a loader process would outlive us (the
    # SIGTERM that handler sends did not end one forked from a worker: it is killed)
    for child in multiprocessing.active_children():
        child.kill()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def cluster_error(exc: BaseException, cluster: Cluster, timeout: float) -> ClusterError | None:
    """The :class:`ClusterError` a TensorFlow error of a multi-worker run means (a worker
    lost or unreachable), or ``None`` for any other error."""
    if not _CLUSTER_JOINED or not isinstance(exc, tf.errors.OpError):
        return None
    text = str(exc)
    signs = ("coordination", "Collective ops is aborted", "heartbeat", "/job:", "Barrier", "RegisterTask")
    if not isinstance(exc, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                            tf.errors.CancelledError, tf.errors.InternalError)) or not any(s in text for s in signs):
        return None
    return ClusterError(cluster.explain(exc, timeout))


def finish_cluster(cluster: Cluster, timeout: float) -> None:
    """The end of a multi-worker run: the chief, when all its work is done, lets the others go
    and waits (at most ``timeout`` s) until each has said it is leaving, so that no worker
    outlives the coordination service the chief hosts. Uses that service's key-value store."""
    if not _CLUSTER_JOINED or cluster.workers == 1:
        return
    from tensorflow.python.eager import context  # the coordination service's key-value store

    store = context.context()
    if cluster.chief:
        store.set_config_key_value("detectlab/end/chief", "done")
        for position in range(cluster.workers):
            if position != cluster.index:
                store.get_config_key_value(f"detectlab/end/{position}", int(timeout * 1000))
    else:
        store.get_config_key_value("detectlab/end/chief")  # as long as the chief's evaluation takes
        store.set_config_key_value(f"detectlab/end/{cluster.index}", "done")


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


def make_strategy(kind: str, cpu_devices: int = 0, cluster_timeout: float = 300.0) -> tf.distribute.Strategy:
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "multi_worker":
        return multi_worker_strategy(Cluster.from_environment(), cluster_timeout)
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


def multi_worker_strategy(cluster: Cluster, timeout: float) -> tf.distribute.Strategy:
    """``MultiWorkerMirroredStrategy`` whose cluster must form within ``timeout`` seconds (else
    a :class:`ClusterError` naming the workers that did not join)."""
    global _CLUSTER_JOINED
    if cluster.workers > 1:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.eager import context

        jobs = {}
        for task in cluster.tasks:
            job = task.split("/")[1].split(":")[1]
            jobs[job] = jobs.get(job, 0) + 1
        # what MultiWorkerMirroredStrategy would configure, plus a registration deadline that
        # also holds for the chief (without the barrier it waits for missing workers forever)
        context.context().configure_coordination_service(
            service_type="standalone", service_leader=cluster.tasks[0],
            coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=j, num_tasks=n) for j, n in jobs.items()],
            cluster_register_timeout_in_ms=int(timeout * 1000))
        context.context().coordination_service.cluster_register_with_barrier = True
        _CLUSTER_JOINED = True  # from here on, only leave_cluster ends the process without a hang
        log.info("multi_worker: %s of %d workers (%s); waiting up to %g s for the others", cluster.name(cluster.index),
                 cluster.workers, ", ".join(cluster.addresses), timeout)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.OpError as exc:
        error = cluster_error(exc, cluster, timeout)
        if error is None:
            raise
        raise error from None
    log.info("multi_worker: %d workers joined, %d replicas in sync", cluster.workers, strategy.num_replicas_in_sync)
    return strategy


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
