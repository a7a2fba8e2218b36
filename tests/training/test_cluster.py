"""TF_CONFIG is parsed once, into this process's place in the cluster."""

import json

import pytest

from detectlab.errors import ConfigError
from detectlab.training.devices import Cluster


def cluster(tf_config: dict) -> Cluster:
    return Cluster.from_environment({"TF_CONFIG": json.dumps(tf_config)})


def test_without_tf_config_one_process_is_the_chief():
    assert Cluster.from_environment({}) == Cluster(workers=1, index=0, chief=True)


@pytest.mark.parametrize("tf_config, expected", [
    ({"cluster": {"worker": ["a", "b"]}, "task": {"type": "worker", "index": 0}}, Cluster(2, 0, True)),
    ({"cluster": {"worker": ["a", "b"]}, "task": {"type": "worker", "index": 1}}, Cluster(2, 1, False)),
    ({"cluster": {"chief": ["c"], "worker": ["a"]}, "task": {"type": "chief", "index": 0}}, Cluster(2, 0, True)),
    ({"cluster": {"chief": ["c"], "worker": ["a"]}, "task": {"type": "worker", "index": 0}}, Cluster(2, 1, False)),
])
def test_workers_index_and_chief(tf_config, expected):
    assert cluster(tf_config) == expected


def test_malformed_tf_config_is_one_line():
    with pytest.raises(ConfigError, match="TF_CONFIG: not a cluster description"):
        Cluster.from_environment({"TF_CONFIG": "{nope"})


TWO = {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 0}}


@pytest.mark.parametrize("reader, text, expected", [
    (0, "Barrier timed out. Id: [Init]Wait_for_all_tasks_to_register::0.\nThe first task at the barrier: "
     "/job:worker/replica:0/task:0. Some timed out task names:\n/job:worker/replica:0/task:1\n",
     "multi_worker: worker 1 (10.0.0.2:2222) did not join the cluster within 5 s (train.cluster_timeout)"),
    (0, "Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are unhealthy "
     "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.",
     "multi_worker: worker 1 (10.0.0.2:2222) stopped (no heartbeat)"),
    (0, "{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/task:0/device:CPU:0}} Collective ops "
     "is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error information from remote target "
     "/job:worker/replica:0/task:1 while calling /tensorflow.WorkerService/RecvBuf",
     "multi_worker: lost contact with worker 1 (10.0.0.2:2222) (Collective ops is aborted by: recvmsg:Connection reset by peer)"),
    # what worker 1 saw when the chief was killed (the call stack between heading and reason shortened)
    (1, "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most recent call last):\n"
     "  File \"tools/train.py\", line 118, in <module>\n\n  File \"detectlab/cli.py\", line 29, in run\n\n"
     "Collective ops is aborted by: failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:2222: "
     "Failed to connect to remote host: Connection refused\nAdditional GRPC error information from remote target "
     "/job:worker/replica:0/task:0 while calling /tensorflow.WorkerService/CompleteInstance:",
     "multi_worker: lost contact with worker 0 (10.0.0.1:2222) (Collective ops is aborted by: failed to connect"),
])
def test_a_cluster_error_is_one_line_naming_the_other_worker(reader, text, expected):
    import tensorflow as tf

    message = cluster({**TWO, "task": {"type": "worker", "index": reader}}).explain(
        tf.errors.UnavailableError(None, None, text), timeout=5)
    assert message.startswith(expected) and "\n" not in message


def test_the_log_line_gives_the_global_and_the_per_replica_batch():
    from detectlab.training.distributed import ReplicaLayout

    assert ReplicaLayout(workers=2, local=4, worker=1, chief=False).describe(32) == (
        "global batch 32 = 8 replicas x 4 images per replica (2 workers x 4 replicas; this is worker 1)")
    assert ReplicaLayout(local=2).describe(5) == "global batch 5 = 2 replicas x 2.5 images per replica on average (2 devices)"
