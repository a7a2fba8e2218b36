"""Feeding and keeping in step the replicas of a ``tf.distribute`` strategy: everything here
goes through ``tf.distribute`` itself (no communication of our own).

- :class:`ReplicaLayout`: workers x local replicas, and what the log says about them;
- :class:`ReplicaBatches`: a :class:`~detectlab.data.generator.DetectionBatches` (one item per
  local replica and step) as the distributed dataset ``fit`` iterates
  (``strategy.distribute_datasets_from_function``: each worker reads its own replicas'
  images, none is split again or dropped by auto-sharding);
- :func:`distribute_replica_batches`: one step's per-replica numpy batches as a distributed
  value for ``strategy.run`` (the alternating loop);
- :func:`from_chief`: values (evaluation results, the resumed epoch, variables) made equal on
  every worker to the chief's, by an all-reduce in which only the chief's replica 0 counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from keras.src.trainers.data_adapters.data_adapter import DataAdapter
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter


def local_replicas(strategy: tf.distribute.Strategy) -> int:
    """Replicas in this process (1 for the default strategy, which has no device list)."""
    return 1 if strategy.num_replicas_in_sync == 1 else len(strategy.extended.worker_devices)


@dataclass(frozen=True)
class ReplicaLayout:
    """``workers`` processes, each with ``local`` replicas; ``worker`` is this one."""

    workers: int = 1
    local: int = 1
    worker: int = 0
    chief: bool = True

    @classmethod
    def of(cls, strategy: tf.distribute.Strategy, cluster=None) -> ReplicaLayout:
        """The layout of ``strategy`` (``cluster``: this process's
        :class:`~detectlab.training.devices.Cluster`, for multi-worker strategies)."""
        local = local_replicas(strategy)
        workers = strategy.num_replicas_in_sync // local
        if cluster is None or workers == 1:
            return cls(workers=workers, local=local)
        return cls(workers=workers, local=local, worker=cluster.index, chief=cluster.chief)

    @property
    def replicas(self) -> int:
        return self.workers * self.local

    def describe(self, global_batch: int) -> str:
        """One log line: the global batch and what each replica gets."""
        per_replica = global_batch / self.replicas
        per = f"{int(per_replica)}" if per_replica == int(per_replica) else f"{per_replica:.1f}"
        where = (f"{self.workers} workers x {self.local} replica{'s' if self.local > 1 else ''}; this is worker "
                 f"{self.worker}{', the chief' if self.chief else ''}") if self.workers > 1 else f"{self.local} devices"
        average = "" if per_replica == int(per_replica) else " on average"
        return f"global batch {global_batch} = {self.replicas} replicas x {per} images per replica{average} ({where})"


class ReplicaBatches(DataAdapter):
    """Keras' ``PyDatasetAdapter`` on a generator whose items are this worker's replica batches
    (``generator.local_replicas`` per step), distributed so that each item reaches its replica.
    ``fit`` and ``evaluate`` accept it in place of the generator (``num_batches`` = steps)."""

    def __init__(self, generator, strategy: tf.distribute.Strategy):
        self.generator, self.strategy = generator, strategy
        self.inner = PyDatasetAdapter(generator, shuffle=False)
        self._distributed = None

    def get_tf_dataset(self):
        if self._distributed is None:
            self._relax_batch_dimension()
            self._distributed = self.strategy.distribute_datasets_from_function(lambda context: self.inner.get_tf_dataset())
        return self._distributed

    def _relax_batch_dimension(self) -> None:
        """The input signature from the first replica batch of the first two steps (as Keras takes
        it from the first two batches: a dimension that differs stays open), with the batch
        dimension always open (replica batches differ by one image when the global batch does
        not divide evenly)."""
        first = [0, self.generator.local_replicas][: 1 + (len(self.generator) > self.generator.local_replicas)]
        items = [self.inner._standardize_batch(self.generator[i]) for i in first]
        from keras.src.trainers.data_adapters.data_adapter_utils import get_tensor_spec

        spec = get_tensor_spec(items)
        self.inner._output_signature = tf.nest.map_structure(
            lambda s: tf.TensorSpec([None, *s.shape[1:]], s.dtype, s.name), spec)

    def get_numpy_iterator(self):
        return self.inner.get_numpy_iterator()

    def get_jax_iterator(self):
        return self.inner.get_jax_iterator()

    def get_torch_dataloader(self):
        return self.inner.get_torch_dataloader()

    def on_epoch_begin(self):
        self.inner.on_epoch_begin()

    def on_epoch_end(self):
        self.inner.on_epoch_end()

    @property
    def num_batches(self):
        return self.generator.steps()

    @property
    def batch_size(self):
        return None

    @property
    def has_partial_batch(self):
        return None

    @property
    def partial_batch_size(self):
        return None


def distribute_replica_batches(strategy: tf.distribute.Strategy, batches: list):
    """``batches``: this worker's per-replica batches of one step (numpy structures, one per
    local replica, in replica order) -> the distributed value ``strategy.run`` splits."""
    local = len(batches)

    def value(context):
        return tf.nest.map_structure(tf.convert_to_tensor, batches[context.replica_id_in_sync_group % local])

    return strategy.experimental_distribute_values_from_function(value)


def from_chief(strategy: tf.distribute.Strategy, values: dict) -> dict:
    """``{name: numpy-convertible}`` -> the chief's values on every worker (same shapes and
    dtypes everywhere; only the chief's need be meaningful, NaN included). A no-op for one
    worker. The chief holds replica 0 (``MultiWorkerMirroredStrategy`` numbers it first)."""
    if strategy.num_replicas_in_sync == local_replicas(strategy):
        return values
    names = list(values)
    given = [np.asarray(values[n]) for n in names]
    # integers travel as float64 (exact below 2**53): collectives reduce floating point values
    tensors = [tf.constant(v if np.issubdtype(v.dtype, np.floating) else v.astype(np.float64)) for v in given]

    @tf.function
    def broadcast():
        def replica():
            context = tf.distribute.get_replica_context()
            source = tf.equal(context.replica_id_in_sync_group, 0)  # the chief's first replica
            masked = [tf.where(source, t, tf.zeros_like(t)) for t in tensors]
            summed = list(masked)
            for dtype in {t.dtype for t in tensors}:  # one all-reduce per dtype (they are packed)
                group = [i for i, t in enumerate(tensors) if t.dtype == dtype]
                for i, value in zip(group, context.all_reduce(tf.distribute.ReduceOp.SUM, [masked[i] for i in group])):
                    summed[i] = value
            return summed

        return strategy.run(replica)

    summed = strategy.experimental_local_results(broadcast())[0]
    return {n: np.asarray(r).astype(v.dtype) for n, r, v in zip(names, summed, given)}


def sync_from_chief(strategy: tf.distribute.Strategy, variables) -> None:
    """Give every worker the chief's values of ``variables`` (weights restored or loaded on
    the chief only, e.g. on ``--resume``). A no-op for one worker."""
    variables = list(variables)
    values = from_chief(strategy, {str(i): v.numpy() for i, v in enumerate(variables)})
    for i, variable in enumerate(variables):
        variable.assign(values[str(i)])
