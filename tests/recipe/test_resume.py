"""kill -9 mid-epoch, rerun the same command: training resumes after the last complete epoch."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]

RECIPE = {
    "model": {"name": "cifar_resnet20", "bn_momentum": 0.9},
    "data": {"source": "digits", "classes": [0, 1, 2, 3], "per_class": 30, "val_per_class": 5, "batch_size": 16},
    "phases": [
        {"name": "head", "epochs": 1, "freeze": "all_but_head"},
        {"name": "finetune", "epochs": 3, "freeze": ["conv1"], "optimizer": {"name": "sgd", "learning_rate": 0.02}},
    ],
    "jit_compile": False,
}


def command(recipe_path, out):
    return [sys.executable, "-m", "restransfer", "train", str(recipe_path), "--out", str(out)]


def wait_for_epoch(state_path, epoch, process, timeout=400):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if state_path.exists():
            state = json.loads(state_path.read_text())
            if state["epoch"] >= epoch:
                return state
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def test_kill_9_then_the_same_command_resumes_and_finishes(tmp_path):
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(command(recipe_path, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env)
    # After epoch 2 (the first of the fine-tuning phase, with optimizer state), kill mid-epoch 3.
    # At once: an epoch here is short, and a pause could let the run reach its last epoch first.
    state = wait_for_epoch(out / "checkpoints/state.json", 2, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    state = json.loads((out / "checkpoints/state.json").read_text())   # what survived the kill
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    done = state["epoch"]
    assert 2 <= done < 4

    again = subprocess.run(command(recipe_path, out), capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"Resuming {out} after epoch {done}" in again.stdout
    # Not a terminal: one line per epoch (`epoch 3/4 'tune': loss ...`), resumed after the kill.
    epochs = [line.split()[1] for line in again.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs == [f"{e}/4" for e in range(done + 1, 5)], again.stdout
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [r["phase_name"] for r in rows] == ["head", "finetune", "finetune", "finetune"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["epochs"] == 4 and json.loads((out / "run.json").read_text())["status"] == "finished"

    # A finished run is not overwritten by the same command: exit status 2 and advice.
    third = subprocess.run(command(recipe_path, out), capture_output=True, text=True, timeout=300, env=env)
    assert third.returncode == 2 and "already holds a finished run" in third.stderr
    assert "Traceback" not in third.stderr
