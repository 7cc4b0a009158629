"""Data-parallel training on the engines TensorFlow and Keras ship, chosen by the recipe.

TensorFlow backend: ``tf.distribute`` (MirroredStrategy on one machine, TPUStrategy). JAX
backend: ``keras.distribution.DataParallel`` over the visible devices, and over several
processes or machines for ``multi_worker`` (``keras.distribution.initialize``, cluster from
``TF_CONFIG``). The recipe's batch size is the global batch; each replica gets an equal share.

Keras 3's ``fit()`` does not run under ``tf.distribute.MultiWorkerMirroredStrategy`` (it fails
converting ``PerReplica`` inputs; keras-team/keras#20585, open), so multi-worker training runs on
the JAX backend, whose Keras distribution API supports it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import keras

from restransfer.errors import ConfigError, OptionError

STRATEGIES = ("none", "mirrored", "multi_worker", "tpu", "data_parallel")
LR_SCALING = ("none", "linear")
_TF_ONLY = ("mirrored", "tpu")


@dataclass
class Distribution:
    """The strategy a run trains under.

    Attributes:
        strategy: the recipe's name for it.
        num_replicas: model replicas that each see a share of the global batch.
        is_chief: whether this process writes the run folder (checkpoints, logs, exports).
        worker: ``"chief"``, ``"worker 1"`` ... for the run log.
        tf_strategy: the ``tf.distribute.Strategy`` on the TensorFlow backend, else None.
    """

    strategy: str = "none"
    num_replicas: int = 1
    is_chief: bool = True
    worker: str = "chief"
    tf_strategy: Any = field(default=None, repr=False)

    def scope(self):
        """Build and compile the model inside this context."""
        if self.tf_strategy is not None:
            return self.tf_strategy.scope()
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def local(self, model: keras.Model):
        """Yield a model for work one process does alone (final evaluation, saving).

        Under JAX multi-process training the weights are arrays spanning every process, which
        ``predict()`` cannot gather; this yields a copy on this process's devices, built and used
        outside the distribution. Elsewhere it yields ``model`` itself.
        """
        if self.strategy != "multi_worker":
            yield model
            return
        weights = model.get_weights()  # replicated arrays: each process holds a full copy
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            copy = keras.models.clone_model(model)
            copy.set_weights(weights)
            yield copy
        finally:
            keras.distribution.set_distribution(previous)

    def leave(self) -> None:
        """Leave a JAX multi-process job in order, once this process's run has finished.

        JAX's coordination service lives in process 0, and a process still connected when it
        stops aborts at exit ("Failed to disconnect from coordination service"), which the
        chief's longer end (report, exports) made likely. So every other process disconnects
        first and process 0 waits until they all have. Elsewhere this does nothing.
        """
        if self.strategy == "multi_worker":
            _leave_jax_job()

    def per_replica_batch(self, global_batch: int) -> int:
        """The share of one replica; the global batch must split evenly."""
        if global_batch % self.num_replicas:
            raise ConfigError(
                f"data.batch_size={global_batch} does not split evenly over {self.num_replicas} replicas "
                f"({self.strategy}); use a multiple of {self.num_replicas}."
            )
        return global_batch // self.num_replicas

    def describe(self, global_batch: int) -> str:
        return (f"distribution {self.strategy}: {self.num_replicas} replica(s), global batch {global_batch}, "
                f"{self.per_replica_batch(global_batch)} per replica; this process is the {self.worker}")


def scaled_learning_rate(learning_rate: float, rule: str, batch_size: int, base_batch_size: int) -> float:
    """Apply the recipe's learning-rate scaling rule to a base rate.

    ``linear`` (Goyal et al. 2017) multiplies the rate by ``batch_size / base_batch_size``, so a
    recipe tuned at one global batch keeps its dynamics at another.

    Example:
        >>> scaled_learning_rate(0.1, "linear", batch_size=1024, base_batch_size=256)
        0.4
    """
    if rule not in LR_SCALING:
        raise ConfigError(f"lr_scaling must be one of {list(LR_SCALING)}. Received lr_scaling={rule!r}.")
    if rule == "none":
        return learning_rate
    return learning_rate * batch_size / base_batch_size


def check_strategy(strategy: str, backend: str | None = None) -> None:
    """Refuse a strategy that the backend (default: the active one) cannot run, before any work.

    Raises:
        OptionError: ``key`` is ``strategy``; the message says which backend runs it instead.
    """
    if strategy not in STRATEGIES:
        raise OptionError("strategy", f"distribution.strategy must be one of {list(STRATEGIES)}. "
                                      f"Received {strategy!r}.")
    backend = backend or keras.backend.backend()
    if strategy == "multi_worker" and backend != "jax":
        raise OptionError(
            "strategy", "strategy 'multi_worker' runs on the JAX backend: Keras 3's fit() does not work "
            "under tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585). Start every worker "
            "with KERAS_BACKEND=jax and the same TF_CONFIG; on one machine use strategy: mirrored.")
    if strategy in _TF_ONLY and backend != "tensorflow":
        raise OptionError(
            "strategy", f"strategy {strategy!r} is tf.distribute and needs KERAS_BACKEND=tensorflow; "
            f"the active backend is {backend}. On JAX use strategy: data_parallel.")
    if strategy == "data_parallel" and backend != "jax":
        raise OptionError(
            "strategy", f"strategy 'data_parallel' is keras.distribution on the JAX backend; the active "
            f"backend is {backend}. On TensorFlow use strategy: mirrored (one machine) or multi_worker.")


def setup_distribution(strategy: str = "none", *, devices: list[str] | None = None) -> Distribution:
    """Create the strategy for the active Keras backend.

    Call it before anything runs on the backend: JAX's multi-process start must come first.

    Args:
        strategy: ``none``, ``mirrored``, ``tpu`` (TensorFlow), ``data_parallel`` or
            ``multi_worker`` (JAX).
        devices: for ``mirrored``/``data_parallel``, the devices to use; default: every GPU, or
            every (logical) CPU device when there is no GPU.
    """
    check_strategy(strategy)
    if strategy == "none":
        return Distribution()
    if strategy == "multi_worker":
        return _jax_multi_worker(_tf_config())
    if strategy == "data_parallel":
        return _jax_data_parallel(devices)
    return _tf_strategy(strategy, devices)


def _jax_data_parallel(devices: list[str] | None) -> Distribution:
    import jax

    devices = devices or keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    index = jax.process_index()
    return Distribution("data_parallel", num_replicas=len(devices), is_chief=index == 0,
                        worker="chief" if index == 0 else f"worker {index}")


def _jax_multi_worker(config: dict) -> Distribution:
    import jax

    workers = config["cluster"].get("chief", []) + config["cluster"]["worker"]
    task = config["task"]
    process_id = int(task["index"]) + (1 if task["type"] == "worker" and "chief" in config["cluster"] else 0)
    # CPU processes exchange gradients through gloo (the default has no cross-process
    # collectives); GPUs use NCCL whatever this says. Asking which backend runs would start it,
    # and the multi-process start must come first.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # A lost peer fails the next collective at once ("Connection closed by peer"), and the
    # engine stops with its message; without this, the process then waits in JAX's shutdown
    # barrier for the dead peer's heartbeat timeout and aborts with a fatal-error trace. Every
    # worker is restarted to resume, so nothing has to be kept in step on the way out.
    jax.config.update("jax_enable_recoverability", True)
    keras.distribution.initialize(workers[0], num_processes=len(workers), process_id=process_id)
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    chief = _is_chief(config)
    return Distribution("multi_worker", num_replicas=len(devices), is_chief=chief,
                        worker="chief" if chief else f"{task['type']} {task['index']}")


def _leave_jax_job() -> None:
    import jax
    from jax._src import distributed as jax_distributed  # the coordination client has no public handle

    client = jax_distributed.global_state.client
    if client is not None and jax.process_index() == 0:
        # Returns when every listed process has called it too or is gone. The others never call
        # it: they disconnect, so this waits until all have left (a dead one: until the
        # service's heartbeat timeout).
        with contextlib.suppress(Exception):  # the run is finished and saved whatever a peer did
            client.get_live_nodes(list(range(jax.process_count())))
    jax.distributed.shutdown()


def _tf_strategy(strategy: str, devices: list[str] | None) -> Distribution:
    import tensorflow as tf

    if strategy == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        tf_strategy = tf.distribute.MirroredStrategy(devices)
        return Distribution("mirrored", tf_strategy.num_replicas_in_sync, tf_strategy=tf_strategy)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    tf_strategy = tf.distribute.TPUStrategy(resolver)
    return Distribution("tpu", tf_strategy.num_replicas_in_sync, tf_strategy=tf_strategy)


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(
            "distribution.strategy='multi_worker' reads the cluster from the TF_CONFIG environment variable, "
            'which is not set. Set it on every worker, e.g. TF_CONFIG=\'{"cluster": {"worker": '
            '["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\'.'
        )
    try:
        config = json.loads(raw)
        config["cluster"]["worker"], config["task"]["type"], config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"TF_CONFIG is not a valid cluster description ({error!r}): it needs "
            '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": N}}. '
            f"Received TF_CONFIG={raw!r}."
        ) from None
    return config


def _is_chief(config: dict) -> bool:
    # As tf.distribute: the "chief" task if the cluster has one, else worker 0.
    task = config["task"]
    if "chief" in config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task["index"]) == 0


def model_scope(model: keras.Model):
    """The scope in which to create models (and optimizers) over ``model``'s layers.

    The TensorFlow backend captures the ``tf.distribute`` strategy a model is created under;
    models made from its layers must be created under the same one. JAX's distribution is
    global, so elsewhere this is a no-op.
    """
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
