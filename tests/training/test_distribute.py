"""Distribution set-up: strategy choice per backend, TF_CONFIG, chief, batch split, LR scaling."""

import json

import keras
import pytest

from restransfer.errors import ConfigError
from restransfer.training.distribute import (
    Distribution,
    _is_chief,
    _tf_config,
    scaled_learning_rate,
    setup_distribution,
)


def test_linear_scaling_rule():
    assert scaled_learning_rate(0.1, "linear", batch_size=1024, base_batch_size=256) == pytest.approx(0.4)
    assert scaled_learning_rate(0.1, "none", batch_size=1024, base_batch_size=256) == 0.1
    with pytest.raises(ConfigError, match="lr_scaling must be one of"):
        scaled_learning_rate(0.1, "sqrt", 64, 256)


def test_global_batch_splits_evenly_or_says_how():
    dist = Distribution("mirrored", num_replicas=4)
    assert dist.per_replica_batch(64) == 16
    with pytest.raises(ConfigError, match="batch_size=30 does not split evenly over 4 replicas"):
        dist.per_replica_batch(30)


def test_none_is_a_single_chief_replica():
    dist = setup_distribution("none")
    assert (dist.num_replicas, dist.is_chief) == (1, True)
    with dist.scope():
        pass


def test_unknown_strategy_and_wrong_backend_are_explained():
    with pytest.raises(ConfigError, match="must be one of"):
        setup_distribution("horovod")
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(ConfigError, match="On TensorFlow use strategy: mirrored"):
            setup_distribution("data_parallel")


@pytest.mark.parametrize(
    "config,chief",
    [
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_chief_follows_tf_distribute(config, chief):
    assert _is_chief(config) is chief


def test_tf_config_errors_say_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG environment variable, which is not set"):
        _tf_config()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {}}))
    with pytest.raises(ConfigError, match="not a valid cluster description"):
        _tf_config()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TensorFlow backend's answer")
def test_multi_worker_on_tensorflow_points_to_jax():
    with pytest.raises(ConfigError, match="keras-team/keras#20585") as error:
        setup_distribution("multi_worker")
    assert "KERAS_BACKEND=jax" in str(error.value)
