"""kill -9 after an epoch checkpoint, then the same command: early stopping's patience and the best
epoch carry on from the checkpoint, class weights apply again, and model.keras is the kept epoch."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils.class_weight import compute_class_weight

from restransfer.bench.imbalance import write_digit_folders
from restransfer.training import checkpoint
from restransfer.training.best_epoch import best_row

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]


def recipe(data):
    return {
        "model": {"name": "cifar_resnet20", "bn_momentum": 0.9},
        "data": {"source": "folder", "path": str(data["train"]), "val_path": str(data["val"]), "image_size": 16,
                 "batch_size": 4, "class_weight": "balanced"},
        "phases": [
            {"name": "head", "epochs": 1, "freeze": "all_but_head"},
            # No epoch can improve accuracy by more than 1: the phase stops after its second epoch (3).
            {"name": "ft", "epochs": 4, "early_stopping": {"patience": 1, "min_delta": 1.0}},
            {"name": "last", "epochs": 1, "freeze": "all_but_head"},
        ],
        "precise_bn": False,  # the kept epoch's weights are then model.keras exactly
        "jit_compile": False,
    }


def wait_for_epoch(state_path, epoch, process, timeout=400):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if state_path.exists():
            try:
                state = json.loads(state_path.read_text())
            except ValueError:
                state = {"epoch": 0}
            if state["epoch"] >= epoch:
                return state
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.1)
    raise AssertionError("no checkpoint appeared")


def test_kill_9_and_resume_keeps_patience_best_epoch_and_class_weights(tmp_path):
    import keras

    import restransfer.models.layers  # noqa: F401
    from restransfer.data import load_data
    from restransfer.diagnostics.evaluation import predict_dataset

    counts = (8, 4, 2)
    data = write_digit_folders(tmp_path / "data", counts, val_per_class=3, digits=(5, 6, 7))
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(data)))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "restransfer", "train", str(path), "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    wait_for_epoch(out / "checkpoints/state.json", 2, first)  # the fine-tuning phase's first epoch
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert json.loads((out / "run.json").read_text())["status"] == "running"

    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    log = (out / "train.log").read_text()
    assert "Resuming" in log
    assert "Early stopping: phase 'ft' stopped after epoch 3 of 5" in log
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "checkpoints/state.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 6]

    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.repeat(np.arange(3), counts))
    np.testing.assert_allclose(list(metrics["class_weights"].values()), expected)
    assert list(metrics["class_weights"]) == ["5", "6", "7"]
    assert "class_weights: {5: " in log and "(data.class_weight: balanced" in log
    assert metrics["checkpoint"] == {"monitor": "val_balanced_accuracy", "keep": "best"}
    best = best_row(history, "val_balanced_accuracy")
    assert metrics["best"]["epoch"] == best["epoch"] == metrics["final"]["epoch"]

    # model.keras holds the kept epoch's weights, and the final scores are its own, as scikit-learn scores them.
    model = keras.saving.load_model(out / "model.keras", compile=False)
    kept = keras.models.clone_model(model)
    checkpoint.restore_best(kept, out / "checkpoints")
    for a, b in zip(model.get_weights(), kept.get_weights()):
        np.testing.assert_array_equal(a, b)
    bundle = load_data(source="folder", path=data["train"], val_path=data["val"], image_size=16, batch_size=4)
    probabilities, labels = predict_dataset(model, bundle.val)
    final = metrics["final"]
    assert final["val_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, probabilities.argmax(-1)))
    assert final["val_accuracy"] == pytest.approx(metrics["best"]["val_accuracy"], abs=1e-6)
    assert set(final["per_class"]["7"]) == {"precision", "recall", "f1", "support"}
    assert [set(row) >= {"val_balanced_accuracy", "val_macro_f1", "per_class"} for row in metrics["phases"]] == [True] * 3
