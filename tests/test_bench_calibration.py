"""The calibration benchmark on the imbalance folders: its held-out scores are scikit-learn's on the
saved model's probabilities of the test folder."""

import numpy as np
import pytest

from restransfer.bench.calibration import CalibrationSettings, run_calibration

pytestmark = pytest.mark.tensorflow


def test_the_imbalance_task_scores_model_keras_on_the_test_folder(tmp_path):
    from sklearn.metrics import accuracy_score, log_loss

    from restransfer.data import load_data
    from restransfer.models.loading import load_model_file

    settings = CalibrationSettings(
        seeds=(1,), task="imbalance", target_overrides={"phases[0].epochs": 2},
        source_overrides={"data.per_class": 6, "data.val_per_class": 2, "data.classes": "ABCDEF", "phases[0].epochs": 1})
    [record] = run_calibration(settings, tmp_path)
    target = tmp_path / "seed1" / "target"
    bundle = load_data(source="folder", path=tmp_path / "seed1/data/test", val_path=tmp_path / "seed1/data/test",
                       image_size=16, batch_size=64, cache="none")
    batches = list(bundle.val.as_numpy_iterator())
    images, labels = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]).argmax(-1)
    probabilities = load_model_file(target / "model.keras").predict(images, verbose=0).astype(np.float64)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)  # float32 softmax rows, summed in float64
    # The temperature is fitted on the 15 per class of the validation folder that did not choose the epoch.
    assert record["heldout_images"] == 150 and record["val_images"] == 75
    assert record["heldout_nll_after"] == pytest.approx(log_loss(labels, probabilities, labels=range(5)), rel=1e-4)
    assert record["heldout_accuracy"] == pytest.approx(accuracy_score(labels, probabilities.argmax(-1)))
    # auto applied the logit-adjusted loss: the largest class has 12x the smallest's images.
    assert record["logit_adjustment"] is not None and record["class_weights"] is None
    with pytest.raises(Exception, match="task is one of quickstart, imbalance"):
        CalibrationSettings(task="cifar")


def test_the_commands_task_choices_are_the_benchmarks():
    from restransfer.bench.calibration import TASKS
    from restransfer.commands import bench as command

    assert command.CALIBRATION_TASKS == TASKS
