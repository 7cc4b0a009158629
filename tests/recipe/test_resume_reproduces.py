"""A resumed run ends where the uninterrupted one does: same history, same weights (one machine)."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "quickstart_scratch.yaml"
# Shuffled batches, random flips and dropout: every random source that decides an epoch.
OVERRIDES = {"phases[0].epochs": 3, "phases[0].schedule.warmup_epochs": 0, "data.per_class": 4,
             "data.val_per_class": 2, "data.augment": {"flip": "horizontal"}, "head.dropout": 0.3}


class StopAfter(keras.callbacks.Callback):
    """Interrupt the run after an epoch, as Ctrl-C (or kill -9) would, its checkpoint written."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def _weights(run_dir: Path) -> list[np.ndarray]:
    return keras.models.load_model(run_dir / "model.keras", safe_mode=True).get_weights()


def test_a_run_resumed_after_an_epoch_ends_with_the_uninterrupted_weights(tmp_path):
    """Epoch 2 of the resumed process takes the uninterrupted run's order, flips and dropout masks.

    Before the epoch-keyed order and seeds (issue 27 item 7), the resumed process replayed
    epoch 1's batches, flips and dropout masks as its epoch 2, and its loss fell far below the
    uninterrupted run's.
    """
    import restransfer

    whole = restransfer.train(RECIPE, OVERRIDES, out=tmp_path / "whole", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        restransfer.train(RECIPE, OVERRIDES, out=tmp_path / "resumed", verbose=0, callbacks=[StopAfter(1)])
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["status"] == "running"
    resumed = restransfer.train(RECIPE, OVERRIDES, out=tmp_path / "resumed", verbose=0)
    assert "Resuming" in (tmp_path / "resumed" / "train.log").read_text()
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert a["epoch"] == b["epoch"]
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5, err_msg=f"epoch {a['epoch']}")
    for a, b in zip(_weights(whole.run_dir), _weights(resumed.run_dir), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


TWO_PHASES = {"phases": [{"name": "head", "epochs": 1, "freeze": ["conv1"]},
                         {"name": "tune", "epochs": 2, "freeze": "none"}],
              "data.per_class": 4, "data.val_per_class": 2}


@pytest.mark.slow
def test_a_resume_in_a_later_phase_keeps_the_finished_phases_facts(tmp_path):
    """metrics.json's precise_bn and feature_cache of a phase finished before the kill survive it."""
    import restransfer

    whole = restransfer.train(RECIPE, TWO_PHASES, out=tmp_path / "whole", verbose=0)
    first = whole.metrics["phases"][0]
    assert first["precise_bn"] is not None and first["feature_cache"] is not None
    with pytest.raises(KeyboardInterrupt):
        restransfer.train(RECIPE, TWO_PHASES, out=tmp_path / "resumed", verbose=0, callbacks=[StopAfter(2)])
    resumed = restransfer.train(RECIPE, TWO_PHASES, out=tmp_path / "resumed", verbose=0)
    again = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["phases"][0]
    assert again["precise_bn"] == first["precise_bn"]
    assert again["feature_cache"] is not None and set(again["feature_cache"]) == set(first["feature_cache"])
    assert resumed.metrics["phases"][0]["precise_bn"] == first["precise_bn"]


@pytest.mark.slow
def test_a_rerun_after_a_kill_at_the_end_does_not_change_the_finished_model(tmp_path):
    """Killed while exporting: the rerun redoes no phase end (no precise BN again), model.keras stays."""
    import restransfer

    run = restransfer.train(RECIPE, TWO_PHASES, out=tmp_path / "run", verbose=0)
    before = _weights(run.run_dir)
    info = json.loads((run.run_dir / "run.json").read_text())
    (run.run_dir / "run.json").write_text(json.dumps({**info, "status": "running"}))
    log_before = (run.run_dir / "train.log").read_text()
    rerun = restransfer.train(RECIPE, TWO_PHASES, out=tmp_path / "run", verbose=0)
    new_lines = (run.run_dir / "train.log").read_text()[len(log_before):]
    assert "Precise BN" not in new_lines, new_lines
    for a, b in zip(before, _weights(rerun.run_dir), strict=True):
        np.testing.assert_array_equal(a, b)
    assert rerun.metrics["final"]["val_loss"] == run.metrics["final"]["val_loss"]
