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


@pytest.mark.xfail(strict=True, reason="issue 27 item 7: the epoch after a resume reshuffles and redraws "
                                       "augmentation and dropout from their starting state")
def test_a_run_resumed_after_an_epoch_ends_with_the_uninterrupted_weights(tmp_path):
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
