"""How a loss computed on one replica's share of a batch adds up to the loss of the whole
(global) batch under ``tf.distribute``, so that a step on N replicas logs and trains what a
step on one device with the same global batch does.

Keras sums the replicas' gradients and averages their logged values. A loss term that is a
*ratio* (a sum over anchors, ROIs or images divided by how many there were) must therefore
divide the replica's sum by the *mean over replicas* of the counts
(:func:`replica_mean`): the mean of the replicas' terms is then ``sum over all / count over
all``, exactly the single-device value, however unevenly positives fall on the replicas.
The total is finally divided by the number of replicas (:func:`replica_scale`), as Keras'
own losses do, so the summed gradients are the global batch's.
"""

from __future__ import annotations

import tensorflow as tf


def _replica_context():
    context = tf.distribute.get_replica_context()
    return None if context is None or context.num_replicas_in_sync == 1 else context


def replica_mean(count):
    """The mean over the replicas in sync of a per-replica normaliser ``count`` (a float32
    tensor: anchors, ROIs, pixels or images counted on this replica); ``count`` itself on
    one device or outside a replica context. No gradient flows through it."""
    context = _replica_context()
    count = tf.stop_gradient(tf.cast(count, tf.float32))
    return count if context is None else context.all_reduce(tf.distribute.ReduceOp.MEAN, count)


def replica_scale(value):
    """Divide a per-replica loss by the number of replicas, as Keras' own losses do."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return value if replicas == 1 else value * (1.0 / replicas)
