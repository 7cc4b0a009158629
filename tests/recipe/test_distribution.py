"""Recipes under a distribution strategy: the same global batch gives the same weights.

Each case runs in a fresh process: logical CPU devices and JAX's host device count must be
set before the backend starts. GroupNorm makes a replica's computation independent of how the
batch is split, so one replica and two must agree to float32 rounding; BatchNorm statistics
over a split batch would not (see norm: sync_batch).
"""

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import TWO_HOST_DEVICES

RECIPE = {
    "model": {"name": "cifar_resnet20", "norm": "layer"},
    "data": {"source": "digits", "classes": [0, 1, 2], "per_class": 16, "val_per_class": 8,
             # No shuffling: Keras iterates a dataset once more under a strategy, which would
             # reshuffle and change the order of the samples, not the arithmetic.
             "image_size": 32, "batch_size": 16, "shuffle_buffer": 1},
    "phases": [{"epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 0.01}, "schedule": "constant"}],
    "seed": 0,
}


def run_python(code: str, tmp_path, env_extra: dict, timeout: int = 600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env_extra}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    code = f"""
        import json
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import restransfer
        recipe = json.loads({json.dumps(json.dumps(RECIPE))})
        single = restransfer.train(recipe, out="single", verbose=0)
        recipe["distribution"] = {{"strategy": "mirrored"}}
        mirrored = restransfer.train(recipe, out="mirrored", verbose=0)
        log = open("mirrored/train.log").read()
        assert "distribution mirrored: 2 replica(s), global batch 16, 8 per replica" in log, log
        diffs = [float(np.max(np.abs(a - b))) for a, b in zip(single.model.get_weights(), mirrored.model.get_weights())]
        print(json.dumps({{"max_diff": max(diffs)}}))
    """
    out = run_python(code, tmp_path, {"KERAS_BACKEND": "tensorflow"})
    result = json.loads(out.strip().splitlines()[-1])
    assert result["max_diff"] < 1e-4


def test_jax_data_parallel_on_two_host_devices_matches_one_device(tmp_path):
    code = f"""
        import json
        import numpy as np
        import jax
        assert len(jax.devices()) == 2, jax.devices()
        import restransfer
        recipe = json.loads({json.dumps(json.dumps(RECIPE))})
        single = restransfer.train(recipe, out="single", verbose=0)
        weights = [np.asarray(w) for w in single.model.get_weights()]
        recipe["distribution"] = {{"strategy": "data_parallel"}}
        parallel = restransfer.train(recipe, out="parallel", verbose=0)
        log = open("parallel/train.log").read()
        assert "distribution data_parallel: 2 replica(s), global batch 16, 8 per replica" in log, log
        diffs = [float(np.max(np.abs(a - np.asarray(b)))) for a, b in zip(weights, parallel.model.get_weights())]
        print(json.dumps({{"max_diff": max(diffs)}}))
    """
    out = run_python(code, tmp_path, TWO_HOST_DEVICES)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["max_diff"] < 1e-4


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_workers(recipe_path, out, tmp_path):
    ports = [_free_port(), _free_port()]
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}}
        env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps(tf_config)}
        log = open(tmp_path / f"worker{index}.log", "a")
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "restransfer", "train", str(recipe_path), "--out", str(out)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT))
    return workers


@pytest.mark.slow
def test_multi_worker_trains_writes_once_and_resumes_after_a_worker_is_killed(tmp_path):
    import time

    import yaml

    # Shuffled and with dropout, so that a resume could only repeat the uninterrupted run's
    # epochs by setting each epoch's order and masks from its number.
    data = {key: value for key, value in RECIPE["data"].items() if key != "shuffle_buffer"}
    recipe = {**RECIPE, "data": data, "head": {"dropout": 0.3}, "phases": [{**RECIPE["phases"][0], "epochs": 3}],
              "distribution": {"strategy": "multi_worker"}}
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    state = out / "checkpoints" / "state.json"

    workers = _start_workers(recipe_path, out, tmp_path)
    deadline = time.time() + 400
    while time.time() < deadline and not state.exists() and all(w.poll() is None for w in workers):
        time.sleep(0.5)
    assert state.exists(), (tmp_path / "worker0.log").read_text()[-3000:]
    workers[1].kill()  # a worker dies mid-run ...
    try:
        chief_code = workers[0].wait(timeout=120)  # ... and the chief stops, saying why and what to do
    except subprocess.TimeoutExpired:
        workers[0].kill()
        chief_code = "still running 120 s after its peer died"
    workers[1].wait()
    chief_log = (tmp_path / "worker0.log").read_text()
    assert chief_code == 1, f"chief: {chief_code}\n" + chief_log[-3000:]
    assert "multi_worker training stopped on the chief: " in chief_log, chief_log[-3000:]
    assert "Start every worker again with the same command to resume." in chief_log
    epoch_saved = json.loads(state.read_text())["epoch"]
    assert 1 <= epoch_saved < 3

    workers = _start_workers(recipe_path, out, tmp_path)  # the same command on both resumes
    for index, w in enumerate(workers):  # both exit cleanly, the chief's longer end (report) or not
        assert w.wait(timeout=600) == 0, (tmp_path / f"worker{index}.log").read_text()[-3000:]
    log = (out / "train.log").read_text()
    assert f"Resuming {out} after epoch {epoch_saved}" in log
    assert "distribution multi_worker: 2 replica(s), global batch 16, 8 per replica" in log
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished"
    assert len((out / "history.csv").read_text().strip().splitlines()) == 1 + 3
    # Only the chief wrote: nothing else appeared beside the run folder and the logs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml", "run", "worker0.log", "worker1.log"]

    # The resumed run ends where an uninterrupted one does, epoch by epoch.
    straight = tmp_path / "uninterrupted"
    straight.mkdir()
    workers = _start_workers(recipe_path, straight / "run", straight)
    for index, w in enumerate(workers):
        assert w.wait(timeout=600) == 0, (straight / f"worker{index}.log").read_text()[-3000:]
    rows = [list(csv.DictReader(open(folder / "history.csv"))) for folder in (out, straight / "run")]
    for column in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose([float(r[column]) for r in rows[0]], [float(r[column]) for r in rows[1]],
                                   rtol=1e-6, err_msg=column)
    weights = [np.load(folder / "checkpoints" / "last-epoch0003.weights.npz") for folder in (out, straight / "run")]
    np.testing.assert_array_equal(weights[0]["paths"], weights[1]["paths"])  # the same variables, in order
    for name in sorted(set(weights[0].files) - {"paths"}):
        np.testing.assert_allclose(weights[0][name], weights[1][name], rtol=1e-6, atol=1e-7, err_msg=name)
