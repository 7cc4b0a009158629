"""A multi-label recipe trains end to end: metrics.json and thresholds.json are scikit-learn's on the
saved model's own predictions, and `evaluate RUN` gives the same figures."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

from restransfer.data.grid import write_grid

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from restransfer.recipe.engine import train

    root = tmp_path_factory.mktemp("multi")
    data = write_grid(root / "grid", counts=(24, 16, 8), digits=(0, 1, 2), cell=8, seed=0)
    recipe = {"task": "multi_label", "model": {"name": "cifar_resnet20", "weights": "none", "bn_momentum": 0.9},
              "data": {"source": "csv", "path": str(data["train"]), "val_path": str(data["val"]),
                       "test_path": str(data["test"]), "image_size": 16, "batch_size": 8},
              "phases": [{"epochs": 1, "optimizer": {"name": "adamw", "learning_rate": 0.003}}],
              "jit_compile": False, "seed": 0}
    return train(recipe, out=root / "run", verbose=0)


def _val_predictions(run):
    from restransfer.data import load_data
    from restransfer.models.loading import load_run_model
    from restransfer.runs import RunFolder

    model = load_run_model(RunFolder(run.run_dir))
    bundle = load_data(**run.plan.data_options(augment={}), run_dir=None)
    images, labels = zip(*[(x, y) for x, y in bundle.val.as_numpy_iterator()])
    return model.predict(np.concatenate(images), verbose=0), np.concatenate(labels) > 0.5


def test_metrics_json_is_scikit_learn_on_the_saved_models_validation_predictions(run):
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    saved = json.loads((run.run_dir / "thresholds.json").read_text())
    names = run.class_names
    assert metrics["task"] == "multi_label" and list(saved["thresholds"]) == names
    p, y = _val_predictions(run)
    assert p.shape == y.shape == (16, len(names)) and np.all((p >= 0) & (p <= 1))
    t = np.array([saved["thresholds"][n] for n in names])
    predicted = p >= t
    final = metrics["final"]
    present = y.any(axis=0)
    reference_map = np.mean([average_precision_score(y[:, j], p[:, j]) for j in np.flatnonzero(present)])
    assert final["val_map"] == pytest.approx(reference_map, abs=1e-5)
    assert final["val_macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro", zero_division=0), abs=1e-6)
    assert final["val_micro_f1"] == pytest.approx(f1_score(y, predicted, average="micro", zero_division=0), abs=1e-6)
    assert final["val_exact_match"] == pytest.approx(accuracy_score(y, predicted))
    assert final["thresholds"] == saved["thresholds"] and "chosen on these 16 images" in final["thresholds_from"]
    for j, name in enumerate(names):
        row = final["per_label"][name]
        assert row["support"] == int(y[:, j].sum()) and row["threshold"] == pytest.approx(t[j])
        if not present[j]:
            assert t[j] == 0.5
            continue
        # The threshold is the label's best F1 over every cut between its probabilities.
        best = max(f1_score(y[:, j], p[:, j] >= c, zero_division=0) for c in np.unique(p[:, j]))
        assert row["f1"] == pytest.approx(best, abs=1e-6)
        assert row["ap"] == pytest.approx(average_precision_score(y[:, j], p[:, j]), abs=1e-5)
    assert "confusion_matrix" not in metrics and metrics["checkpoint"]["monitor"] == "val_map"


def test_evaluate_run_gives_the_metrics_json_figures_and_the_multi_label_files(run):
    import restransfer as rt

    metrics = json.loads((run.run_dir / "metrics.json").read_text())["final"]
    report = rt.evaluate(run.run_dir)
    for key in ("map", "macro_f1", "micro_f1", "exact_match", "loss"):
        assert report[key] == pytest.approx(metrics[f"val_{key}"], abs=1e-6), key
    assert report["thresholds"] == metrics["thresholds"] and "thresholds.json" in report["thresholds_from"]
    test = rt.evaluate(run.run_dir, split="test")
    assert test["num_images"] == 8 and test["thresholds"] == metrics["thresholds"]
    # Training's end scored the test split the same way, with the validation images' thresholds.
    at_training = json.loads((run.run_dir / "metrics.json").read_text())["test"]
    for key in ("map", "macro_f1", "micro_f1", "exact_match", "loss"):
        assert at_training[key] == pytest.approx(test[key], abs=1e-6), key
    assert at_training["thresholds"] == metrics["thresholds"]
    p, y = _val_predictions(run)
    rows = list(csv.DictReader((run.run_dir / "plots" / "top_losses.csv").open()))
    clipped = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    losses = -(y * np.log(clipped) + (~y) * np.log(1 - clipped)).sum(axis=1)
    assert [float(r["loss"]) for r in rows] == pytest.approx(sorted(losses, reverse=True), abs=1e-4)
    errors = list(csv.DictReader((run.run_dir / "plots" / "label_errors.csv").open()))
    assert [r["label"] for r in errors] == run.class_names
    assert (run.run_dir / "plots" / "label_scores.png").is_file()
    html = (run.run_dir / "report.html").read_text()
    assert "val mAP" in html and "Per label (validation)" in html


def test_predict_lists_the_labels_over_their_thresholds_and_explain_draws_a_chosen_label(run, tmp_path, capsys):
    import restransfer as rt
    from restransfer.cli import main

    grid = run.run_dir.parent / "grid"
    files = [str(grid / "val" / f"{i:05d}.png") for i in range(4)]
    thresholds = json.loads((run.run_dir / "thresholds.json").read_text())["thresholds"]
    p, _ = _val_predictions(run)
    for i, result in enumerate(rt.predict(run.run_dir, files, top_k=2)):
        assert len(result["top"]) == 2
        expected = {name for j, name in enumerate(run.class_names) if p[i, j] >= thresholds[name]}
        assert {name for name, _ in result["labels"]} == expected
        assert all(prob == pytest.approx(p[i, run.class_names.index(name)], abs=1e-5) for name, prob in result["labels"])
    label = run.class_names[-1]
    assert main(["predict", str(run.run_dir), *files[:1], "--explain", "--label", label,
                 "--out", str(tmp_path / "cam.png")]) == 0
    out = capsys.readouterr().out
    assert "labels over their thresholds" in out and f"of {label} for" in out and (tmp_path / "cam.png").is_file()
    assert main(["predict", str(run.run_dir), *files[:1], "--explain", "--label", "cat"]) != 0
    assert "--label 'cat' is not one of the model's labels" in " ".join(capsys.readouterr().err.split())
    assert main(["evaluate", str(run.run_dir)]) == 0
    assert "mAP" in capsys.readouterr().out


@pytest.mark.slow  # two exports, each verified in a fresh process
def test_exports_carry_the_thresholds_and_the_saved_model_returns_the_labels_over_them(run):
    import restransfer as rt
    from restransfer import export_run
    from restransfer.export.saved_model import predict_saved_model

    thresholds = json.loads((run.run_dir / "thresholds.json").read_text())["thresholds"]
    final = json.loads((run.run_dir / "metrics.json").read_text())["final"]
    saved = export_run(run.run_dir, "saved_model")
    assert saved.verification.passed, str(saved.verification)
    manifest = json.loads((saved.path / "export.json").read_text())
    assert manifest["task"] == "multi_label" and manifest["thresholds"] == thresholds
    assert json.loads((saved.path / "assets" / "thresholds.json").read_text())["thresholds"] == thresholds
    score = manifest["scores"]["saved_model"]
    assert score["keras_map"] == pytest.approx(final["val_map"], abs=1e-5) and score["label_set_agreement"] == 1.0
    files = [str(run.run_dir.parent / "grid" / "val" / f"{i:05d}.png") for i in range(6)]
    served = predict_saved_model(saved.path, files)
    local = rt.predict(run.run_dir, files)
    assert [[n for n, _ in r["labels"]] for r in served] == [[n for n, _ in r["labels"]] for r in local]
    lite = export_run(run.run_dir, "tflite")
    assert lite.verification.passed and (lite.path / "thresholds.json").is_file()
    assert json.loads((lite.path / "export.json").read_text())["thresholds"] == thresholds
    card = (run.run_dir / "export" / "MODEL_CARD.md").read_text()
    assert "## Labels (multi-label)" in card and "mAP" in card


def test_the_verifier_refuses_labels_that_are_not_those_over_the_thresholds():
    from restransfer.export.verify import _compare

    reference = np.array([[0.9, 0.1], [0.2, 0.7]], np.float32)
    good = {"probabilities": reference, "labels": np.array(["a", "b"])}
    assert _compare("saved_model", "serve_tensor", good, reference, ["a", "b"], 1e-4, thresholds=[0.5, 0.5]).passed
    bad = {"probabilities": reference, "labels": np.array(["a", "a;b"])}
    check = _compare("saved_model", "serve_tensor", bad, reference, ["a", "b"], 1e-4, thresholds=[0.5, 0.5])
    assert check.problems == ["'labels' differ from the labels over the thresholds on images [1]"]
    check = _compare("saved_model", "serve_tensor", {"probabilities": reference}, reference, ["a", "b"], 1e-4,
                     thresholds=[0.5, 0.5])
    assert "must return 'labels'" in check.problems[0]


def test_a_damaged_thresholds_file_is_named_not_used(run):
    from restransfer.errors import ConfigError
    from restransfer.runs import RunFolder

    path = run.run_dir / "thresholds.json"
    kept = path.read_text()
    try:
        path.write_text(json.dumps({"thresholds": {name: 2.0 for name in run.class_names}}))
        with pytest.raises(ConfigError, match="thresholds.json is damaged"):
            RunFolder(run.run_dir).thresholds()
    finally:
        path.write_text(kept)
