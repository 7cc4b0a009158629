"""`calibration: temperature` in a run: the temperature is the NLL minimum on the logits of the
trained model on validation images that did not choose the kept epoch, it is folded into model.keras (so predict and exports are calibrated), no prediction
changes, and metrics.json and the report say what it did. The same run is tracked in a local MLflow
SQLite store: parameters, per-epoch and final metrics, and the run folder's files as artifacts."""

import json

import numpy as np
import pytest

import restransfer as rt
from restransfer.checkpoint_files import load_state
from restransfer.diagnostics.evaluation import predict_dataset
from restransfer.models.loading import load_run_model
from restransfer.recipe.engine import build_model
from restransfer.runs import RunFolder
from restransfer.training import checkpoint
from restransfer.training.calibration import fit_temperature, logits_model, softmax

pytestmark = pytest.mark.tensorflow

TINY = {
    "model": {"name": "cifar_resnet20", "bn_momentum": 0.9},
    "data": {"source": "digits", "classes": [0, 1, 2], "per_class": 6, "val_per_class": 10, "image_size": 16,
             "batch_size": 6},
    "phases": [{"epochs": 2, "optimizer": {"name": "adamw", "learning_rate": 0.01}}],
    "jit_compile": False,
    "calibration": "temperature",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrated")
    return rt.train({**TINY, "tracking": {"mlflow": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "tiny"}}},
                    out=root / "run", verbose=0)


def test_temperature_is_fitted_on_held_out_validation_and_folded_into_model_keras(run):
    folder = RunFolder(run.run_dir)
    calibration = run.metrics["calibration"]
    assert json.loads((folder.path / "metrics.json").read_text())["calibration"] == calibration
    # checkpoint.keep best chooses the epoch on half of each class's 10 validation images, the other 15 fit T.
    assert run.plan.decisions.calibration_holdout.value == 0.5
    assert calibration["images"] == 15 and calibration["fitted_on"] == "held-out validation"
    assert calibration["bins"] == 15
    # The last checkpoint holds the trained, uncalibrated weights.
    uncalibrated = build_model(run.plan, 3, load_weights=False)
    checkpoint.restore_weights(uncalibrated, folder.checkpoints, load_state(folder.checkpoints))
    from restransfer.data import load_data

    data = load_data(**run.plan.data_options(augment={}), calibration_holdout=0.5)
    logits, labels = predict_dataset(logits_model(uncalibrated), data.val_calibration)
    refit = fit_temperature(logits, labels)
    assert calibration["temperature"] == pytest.approx(refit.temperature, rel=1e-4)
    assert calibration["nll_after"] <= calibration["nll_before"]
    # model.keras returns the calibrated probabilities on every validation image; no prediction changes.
    saved = load_run_model(folder)
    all_logits, all_labels = predict_dataset(logits_model(uncalibrated), data.val)
    probabilities, _ = predict_dataset(saved, data.val)
    np.testing.assert_allclose(probabilities, softmax(all_logits / refit.temperature), rtol=2e-4, atol=2e-5)
    np.testing.assert_array_equal(probabilities.argmax(-1), all_logits.argmax(-1))
    # The final evaluation scores the calibrated model on all of them.
    nll = -np.mean(np.log(probabilities[np.arange(30), all_labels]))
    assert run.metrics["final"]["num_val"] == 30
    assert run.metrics["final"]["val_loss"] == pytest.approx(nll, rel=1e-3, abs=1e-4)
    assert (folder.plots / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (folder.path / "train.log").read_text()
    assert "Validation images: 15 choose the kept epoch, the other 15 fit the temperature" in log
    assert "calibration_holdout: 0.5 (checkpoint.keep best chooses an epoch" in log
    report = (folder.path / "report.html").read_text()
    assert "reliability diagram" in report and "Calibration: temperature" in report


def test_keep_last_fits_the_temperature_on_every_validation_image(tmp_path):
    run = rt.train({**TINY, "phases": [{**TINY["phases"][0], "epochs": 1}], "checkpoint": {"keep": "last"}},
                   out=tmp_path / "run", verbose=0)
    decision = run.plan.decisions.calibration_holdout
    assert decision.value == 0.0 and decision.reason.startswith("checkpoint.keep last without early stopping")
    assert run.metrics["calibration"]["images"] == 30 and run.metrics["calibration"]["fitted_on"] == "validation"


def test_mlflow_store_holds_params_metrics_and_artifacts(run, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    folder = RunFolder(run.run_dir)
    client = mlflow.tracking.MlflowClient(tracking_uri=run.plan.recipe.tracking.mlflow.uri)
    tracked = client.get_run(json.loads((folder.path / "run.json").read_text())["mlflow_run_id"])
    assert tracked.info.status == "FINISHED"
    assert client.get_experiment(tracked.info.experiment_id).name == "tiny"
    params = tracked.data.params
    assert params["phases.0.optimizer.learning_rate"] == "0.01" and params["calibration"] == "temperature"
    assert params["data.classes.2"] == "2" and params["model.name"] == "cifar_resnet20"
    history = client.get_metric_history(tracked.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(row["epoch"], pytest.approx(row["val_accuracy"]))
                                                     for row in run.history]
    metrics = tracked.data.metrics
    assert metrics["final.val_accuracy"] == pytest.approx(run.metrics["final"]["val_accuracy"])
    assert metrics["calibration.temperature"] == pytest.approx(run.metrics["calibration"]["temperature"])
    names = {a.path for a in client.list_artifacts(tracked.info.run_id)}
    assert {"model.keras", "metrics.json", "report.html", "recipe.yaml", "plots"} <= names
    plots = {a.path for a in client.list_artifacts(tracked.info.run_id, "plots")}
    assert "plots/reliability.png" in plots and "plots/training_curves.png" in plots
    assert tracked.info.artifact_uri.startswith((folder.path.parent / "mlartifacts").as_uri())
    saved = client.download_artifacts(tracked.info.run_id, "model.keras", str(tmp_path))
    assert open(saved, "rb").read() == (folder.path / "model.keras").read_bytes()


def test_a_sharpening_temperature_on_the_epoch_picking_images_is_flagged(tmp_path):
    """A model that is right on all but one validation image but unsure looks under-confident there: T < 1."""
    import keras
    import tensorflow as tf

    from restransfer.models.heads import classifier
    from restransfer.recipe.engine import calibrate

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, classifier(keras.layers.Dense(8, activation="relu")(inputs), 3))
    x = np.random.default_rng(0).normal(0, 1, (60, 6)).astype("float32")
    predicted = model.predict(x, verbose=0).argmax(-1)
    predicted[0] = (predicted[0] + 1) % 3  # one mistake: with none the NLL has no minimum (the temperature stays 1)
    labels = np.eye(3, dtype="float32")[predicted]
    lines = []
    result = calibrate(model, tf.data.Dataset.from_tensor_slices((x, labels)).batch(16), "temperature", tmp_path,
                       lines.append, epoch_kept_on_data=True)
    assert result.temperature < 1
    assert any(line.startswith(f"Warning: the temperature {result.temperature:.3f} is below 1") and
               "also picked the kept epoch" in line for line in lines), lines


def test_the_kept_epoch_is_chosen_on_the_half_that_does_not_fit_the_temperature(tmp_path):
    # No BatchNorm (so no precise BN after the epoch): the checkpoint is the model that epoch 1 scored.
    recipe = {**TINY, "model": {"name": "cifar_resnet20", "norm": "layer"},
              "phases": [{**TINY["phases"][0], "epochs": 1}]}
    run = rt.train(recipe, out=tmp_path / "run", verbose=0)
    folder = RunFolder(run.run_dir)
    trained = build_model(run.plan, 3, load_weights=False)
    checkpoint.restore_weights(trained, folder.checkpoints, load_state(folder.checkpoints))
    from restransfer.data import load_data
    from restransfer.training.calibration import negative_log_likelihood

    data = load_data(**run.plan.data_options(augment={}), calibration_holdout=0.5)
    losses = {name: negative_log_likelihood(*predict_dataset(logits_model(trained), getattr(data, name)))
              for name in ("val_monitor", "val_calibration", "val")}
    assert run.history[0]["val_loss"] == pytest.approx(losses["val_monitor"], rel=1e-4)
    assert abs(losses["val_monitor"] - losses["val"]) > 1e-3  # the halves tell apart
