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
    from restransfer.runs import RunFolder

    model = RunFolder(run.run_dir).load_model()
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
