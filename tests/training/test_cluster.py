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
