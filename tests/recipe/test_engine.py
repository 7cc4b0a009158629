"""Phases freeze what they say (weights and BatchNorm statistics bit-identical), and a run folder
holds everything the contract lists, reloadable and consistent."""

import csv
import json

import keras
import numpy as np
import pytest

import restransfer as rt
from restransfer.errors import ConfigError, TrainingError
from restransfer.models.stages import layer_stage
from restransfer.recipe.engine import build_model, compile_phase
from restransfer.recipe.load import load_recipe
from restransfer.recipe.plan import load_plan
from restransfer.runs import RunFolder

pytestmark = pytest.mark.tensorflow

TINY = {
    "model": {"name": "cifar_resnet20", "bn_momentum": 0.9},
    "data": {"source": "digits", "classes": [0, 1, 2], "per_class": 8, "val_per_class": 6, "batch_size": 8},
    "phases": [
        {"name": "head", "epochs": 1, "freeze": "all_but_head", "optimizer": {"name": "adamw", "learning_rate": 0.01}},
        {"name": "finetune", "epochs": 1, "freeze_until": "conv3", "optimizer": {"name": "sgd", "learning_rate": 0.01},
         "lr_multipliers": {"conv3": 0.1}, "weight_decay": 0.0001},
    ],
    "jit_compile": False,
}


def snapshot(model):
    return {v.path: np.array(v) for v in model.weights}


def test_frozen_weights_and_bn_statistics_stay_bit_identical():
    plan = load_plan(TINY)
    keras.utils.set_random_seed(0)
    model = build_model(plan, num_classes=3)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    assert [p.frozen for p in plan.phases] == [("conv1", "conv2", "conv3", "conv4"), ("conv1", "conv2")]
    for phase in plan.phases:
        compile_phase(model, phase.config, frozen=phase.frozen, steps_per_epoch=2, num_classes=3,
                      jit_compile=False)
        before = snapshot(model)
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        after = snapshot(model)
        compared = {"frozen": 0, "trained": 0}
        for path, value in before.items():
            stage = layer_stage(path.split("/")[0])
            if stage in phase.frozen:
                np.testing.assert_array_equal(after[path], value, err_msg=path)
                compared["frozen"] += 1
            elif stage != "input" and not path.endswith("moving_variance"):
                assert not np.array_equal(after[path], value), f"{path} did not train"
                compared["trained"] += 1
        assert compared["frozen"] > 0 and compared["trained"] > 0
    # BatchNorm of a frozen stage ran in inference mode: its moving statistics are among the
    # tensors compared above, and those of a trained stage moved.
    assert "conv2_block1_1_bn/moving_mean" in before and "conv3_block1_1_bn/moving_mean" in before
    np.testing.assert_array_equal(after["conv2_block1_1_bn/moving_mean"], before["conv2_block1_1_bn/moving_mean"])
    assert not np.array_equal(after["conv3_block1_1_bn/moving_mean"], before["conv3_block1_1_bn/moving_mean"])


def test_model_takes_pixels_and_outputs_float32_probabilities():
    model = build_model(load_plan(TINY), num_classes=3)
    assert model.get_layer("preprocess").mode == "torch"
    assert model.get_layer("conv2_block1_1_bn").momentum == 0.9
    out = model.predict_on_batch(np.full((2, 32, 32, 3), 128.0, "float32"))
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return rt.train(TINY, out=out, verbose=0)


def test_run_folder_follows_the_contract(finished):
    run_dir = finished.run_dir
    for name in ("recipe.yaml", "run.json", "class_names.json", "model.keras", "history.csv", "metrics.json",
                 "train.log", "checkpoints/state.json", "checkpoints/best.weights.npz",
                 "checkpoints/last-epoch0002.weights.npz", "plots/training_curves.png", "plots/confusion_matrix.png"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "logs").rglob("events.out.tfevents*"))
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["model"] == "cifar_resnet20"
    assert info["image_size"] == [32, 32] and info["preprocessing"] == "torch" and info["backend"] == "tensorflow"
    assert info["resize"] == "area"  # what predict and export resize with
    assert json.loads((run_dir / "class_names.json").read_text()) == finished.class_names == ["0", "1", "2"]
    for png in run_dir.glob("plots/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["phase_name"]) for r in rows] == [("1", "head"), ("2", "finetune")]
    assert rows == [{k: str(v) for k, v in row.items()} for row in finished.history]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [p["name"] for p in metrics["phases"]] == ["head", "finetune"]
    for key in ("val_accuracy", "val_loss", "epochs", "seconds", "images_per_s"):
        assert key in metrics["final"] and all(key in p for p in metrics["phases"])
    assert metrics["final"]["epochs"] == 2
    # Both phases train after frozen leading stages without augmentation: on cached features.
    assert [p["feature_cache"]["after"] for p in metrics["phases"]] == ["avg_pool", "conv2_block3_out"]
    assert [p["feature_cache"]["shape"] for p in metrics["phases"]] == [[64], [32, 32, 16]]
    assert "Feature cache: frozen ['conv1', 'conv2'] run once per image up to 'conv2_block3_out'" in (
        run_dir / "train.log").read_text()
    # The resolved recipe reloads to the same recipe.
    assert load_recipe(run_dir / "recipe.yaml") == finished.recipe
    log = (run_dir / "train.log").read_text()
    # Every decision, with its reason, before the first phase starts.
    decisions = log[log.index("Decisions (each auto with its reason):"):log.index("Phase 1/2")]
    assert "  jit_compile: off (set in the recipe)\n" in decisions
    assert "  steps_per_epoch: 3 (24 training images in batches of 8)\n" in decisions
    assert "feature_cache: conv2 (on, the frozen ['conv1', 'conv2'] run once per image)" in decisions
    assert "decided from the data" not in decisions


def test_model_keras_reloads_in_safe_mode_with_identical_outputs(finished):
    reloaded = keras.saving.load_model(finished.run_dir / "model.keras", safe_mode=True, compile=False)
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict_on_batch(x), finished.model.predict_on_batch(x), rtol=1e-5, atol=1e-6)
    assert all(layer.trainable for layer in reloaded.layers)
    assert getattr(reloaded, "optimizer", None) is None


def test_evaluate_matches_training_metrics(finished):
    # One evaluation path: `evaluate RUN` on the saved model.keras gives the numbers training's end wrote.
    report = rt.evaluate(finished.run_dir)
    metrics = json.loads((finished.run_dir / "metrics.json").read_text())
    final = metrics["final"]
    assert (report["accuracy"], report["balanced_accuracy"], report["macro_f1"]) == (
        final["val_accuracy"], final["val_balanced_accuracy"], final["val_macro_f1"])
    assert report["loss"] == pytest.approx(final["val_loss"], rel=1e-6)
    assert report["ece"] == pytest.approx(final["val_ece"], rel=1e-6, abs=1e-7)
    assert report["per_class"] == final["per_class"] == metrics["per_class"]
    assert report["confusion_matrix"] == metrics["confusion_matrix"]
    assert report["num_images"] == 18 and set(report["per_class"]) == {"0", "1", "2"}
    assert np.sum(report["confusion_matrix"]) == 18
    assert (finished.run_dir / "evaluation.json").is_file()


def test_predict_decodes_like_evaluation(finished, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digit = load_digits().images[0] * (255 / 16)          # a "0"
    path = tmp_path / "zero.png"
    Image.fromarray(digit.astype("uint8")).save(path)
    [result] = rt.predict(finished.run_dir, [path], top_k=2)
    assert len(result["top"]) == 2 and result["top"][0][1] >= result["top"][1][1]
    assert {label for label, _ in result["top"]} <= {"0", "1", "2"}


def test_finished_run_is_never_overwritten_silently(finished):
    with pytest.raises(ConfigError, match="already holds a finished run.*--out.*--force"):
        rt.train(TINY, out=finished.run_dir, verbose=0)
    with pytest.raises(ConfigError, match="different recipe: phases\\[0\\].epochs was 1, now 2"):
        RunFolder(finished.run_dir).path.joinpath("run.json").write_text(
            json.dumps({**json.loads((finished.run_dir / "run.json").read_text()), "status": "running"}))
        rt.train(TINY, overrides={"phases[0].epochs": 2}, out=finished.run_dir, verbose=0)


def test_force_refuses_to_delete_foreign_files(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="thesis.tex"):
        RunFolder(tmp_path).prepare(load_plan(TINY).text, force=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a restransfer run folder"):
        RunFolder(other).prepare(load_plan(TINY).text)


def test_nan_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    from restransfer.recipe import engine

    build = engine.build_model

    def poisoned(*args, **kwargs):  # a NaN weight in the head: every loss is NaN
        model = build(*args, **kwargs)
        kernel = keras.ops.convert_to_numpy(model.get_layer("predictions").kernel).copy()
        kernel[0, 0] = np.nan
        model.get_layer("predictions").kernel.assign(kernel)
        return model

    monkeypatch.setattr(engine, "build_model", poisoned)
    # head.init random keeps the poisoned kernel (zeros would overwrite it).
    recipe = {**TINY, "head": {"init": "random"}, "phases": [TINY["phases"][0]]}
    with pytest.raises(TrainingError, match="training loss became nan in epoch 1.*last good checkpoint"):
        rt.train(recipe, out=tmp_path / "nan", verbose=0)
    info = json.loads((tmp_path / "nan/run.json").read_text())
    assert info["status"] == "failed" and "nan" in info["error"]
    assert not (tmp_path / "nan/checkpoints/state.json").exists()


def test_a_trained_run_has_its_interpretation_files_and_report(finished):
    from html.parser import HTMLParser

    run_dir = finished.run_dir
    with open(run_dir / "plots" / "top_losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 and [r["rank"] for r in rows] == [str(i) for i in range(1, 17)]
    losses = [float(r["loss"]) for r in rows]
    assert losses == sorted(losses, reverse=True) and all(r["path"].startswith("val[") for r in rows)
    assert (run_dir / "plots" / "top_losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(run_dir / "plots" / "most_confused.csv") as f:
        pairs = list(csv.DictReader(f))
    matrix = np.array(finished.metrics["confusion_matrix"])
    assert sum(int(p["count"]) for p in pairs) == matrix.sum() - np.trace(matrix)
    images = []

    class Images(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                images.append(dict(attrs)["src"][:22])

    text = (run_dir / "report.html").read_text()
    Images().feed(text)
    assert images == ["data:image/png;base64,"] * 3  # curves, confusion matrix, top losses
    assert "phase 1: head" in text and "phase 2: finetune" in text and "Top losses" in text
    assert "Report: " in (run_dir / "train.log").read_text()


def test_interpret_returns_what_evaluate_writes(finished):
    found = rt.interpret(finished.run_dir, top_losses=5)
    assert len(found.top_losses) == 5 and found.files["top_losses_csv"].is_file()
    with open(found.files["top_losses_csv"]) as f:
        assert [r["path"] for r in csv.DictReader(f)] == [row.path for row in found.top_losses]
    matrix = np.array(rt.evaluate(finished.run_dir)["confusion_matrix"])
    assert sum(count for _, _, count in found.most_confused) == matrix.sum() - np.trace(matrix)


def test_predict_explain_saves_a_gradcam_overlay(finished, tmp_path, capsys):
    from PIL import Image
    from sklearn.datasets import load_digits

    from restransfer.cli import main

    path = tmp_path / "one.png"
    Image.fromarray((load_digits().images[1] * (255 / 16)).astype("uint8")).save(path)
    assert main(["predict", str(finished.run_dir), str(path), "--explain", "--out", str(tmp_path / "cam.png")]) == 0
    assert "Grad-CAM (conv4)" in capsys.readouterr().out
    assert Image.open(tmp_path / "cam.png").size[0] > 200
    assert main(["predict", str(finished.run_dir), str(path), "--out", str(tmp_path / "x.png")]) == 2


def test_a_test_split_is_scored_by_the_final_model_and_logged(tmp_path):
    """metrics.json's ``test`` is scikit-learn's scores of model.keras on the test images."""
    from sklearn.datasets import load_digits
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    from restransfer.data import load_data
    from restransfer.models.loading import load_model_file

    digits = load_digits()
    keep = digits.target < 3
    images, labels = (digits.images[keep] * (255 / 16)).astype("float32"), digits.target[keep]
    recipe = {**TINY, "data": {"source": "arrays", "x_train": images[:30], "y_train": labels[:30],
                               "x_val": images[30:45], "y_val": labels[30:45], "x_test": images[45:75],
                               "y_test": labels[45:75], "image_size": 16, "batch_size": 8},
              "phases": TINY["phases"][:1]}
    run = rt.train(recipe, out=tmp_path / "run", verbose=0)
    test = json.loads((run.run_dir / "metrics.json").read_text())["test"]
    bundle = load_data(**run.plan.data_options(augment={}), run_dir=None)
    batches = list(bundle.test.as_numpy_iterator())
    x, y = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    y = y.argmax(-1) if y.ndim == 2 else y
    predicted = load_model_file(run.run_dir / "model.keras").predict(x, verbose=0).argmax(-1)
    assert test["num_images"] == 30 and test["tta"] is None
    assert test["accuracy"] == pytest.approx(accuracy_score(y, predicted), abs=1e-9)
    assert test["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted), abs=1e-9)
    assert test["macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro"), abs=1e-9)
    assert f"Test split (30 images, used for nothing before this): accuracy {test['accuracy']:.4f}" in (
        run.run_dir / "train.log").read_text()
