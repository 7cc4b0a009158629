"""`restransfer cv`: one ordinary run per fold, cv.json with the folds' spread, oof.csv with every pooled image
once, predictions consistent with each fold run's own evaluation, and a killed cv retrains only what is unfinished."""

import csv
import json

import numpy as np
import pytest
import yaml

from restransfer.cli import main
from restransfer.data.folds import fold_splits, pooled_part
from restransfer.data.pipeline import make_listing
from restransfer.errors import ConfigError
from restransfer.recipe.cross_validation import cross_validate
from restransfer.recipe.plan import load_plan

pytestmark = pytest.mark.tensorflow

TINY = {
    "model": {"name": "cifar_resnet20", "bn_momentum": 0.9},
    "data": {"source": "digits", "classes": [0, 1, 2], "per_class": 4, "val_per_class": 2, "image_size": 16,
             "batch_size": 6},
    "phases": [{"epochs": 1, "freeze": ["conv1", "conv2"], "optimizer": {"name": "adamw", "learning_rate": 0.01}}],
    "jit_compile": False,
    "seed": 4,
}


def test_cv_writes_folds_cv_json_oof_csv_and_report_and_resumes(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "cv"
    assert main(["cv", str(recipe), "--folds", "2", "--out", str(out)]) == 0
    result = json.loads((out / "cv.json").read_text())
    assert [row["run"] for row in result["per_fold"]] == ["fold-1", "fold-2"] and result["num_images"] == 18
    accuracies = [row["val_accuracy"] for row in result["per_fold"]]
    assert result["summary"]["val_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert result["summary"]["val_accuracy"]["sd"] == pytest.approx(np.std(accuracies, ddof=1))
    for fold in (1, 2):
        recipe_text = (out / f"fold-{fold}" / "recipe.yaml").read_text()
        assert f"index: {fold}" in recipe_text and json.loads((out / f"fold-{fold}" / "run.json").read_text())[
            "status"] == "finished"
    with open(out / "oof.csv") as f:
        rows = list(csv.DictReader(f))
    # Every pooled image once, labelled as the pool labels it, in the fold that validated it.
    pool = pooled_part(make_listing(load_plan(TINY).data, 4))
    assert sorted(int(r["index"]) for r in rows) == list(range(18))
    names = ["0", "1", "2"]
    splits = fold_splits(pool.labels, folds=2, seed=4)
    for r in rows:
        assert r["label"] == names[pool.labels[int(r["index"])]]
        assert int(r["index"]) in splits[int(r["fold"]) - 1][1]
        probabilities = [float(r[f"p_{n}"]) for n in names]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert r["predicted"] == names[int(np.argmax(probabilities))]
    # The out-of-fold predictions of a fold are the ones its own run evaluated.
    for fold, row in enumerate(result["per_fold"], start=1):
        mine = [r for r in rows if int(r["fold"]) == fold]
        assert np.mean([r["predicted"] == r["label"] for r in mine]) == pytest.approx(row["val_accuracy"])
    assert result["oof"]["num_images"] == 18 and np.sum(result["oof"]["confusion_matrix"]) == 18
    report = (out / "report.html").read_text()
    assert "Metrics over folds" in report and "out-of-fold confusion matrix" in report

    # A killed cv: fold 2 never finished. Only fold 2 trains again.
    kept = (out / "fold-1" / "model.keras").stat().st_mtime_ns
    info = json.loads((out / "fold-2" / "run.json").read_text())
    (out / "fold-2" / "run.json").write_text(json.dumps({**info, "status": "running"}))
    capsys.readouterr()
    assert main(["cv", str(recipe), "--folds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Fold 1/2: finished earlier" in printed and "Fold 2/2: training" in printed
    assert (out / "fold-1" / "model.keras").stat().st_mtime_ns == kept
    assert json.loads((out / "fold-2" / "run.json").read_text())["status"] == "finished"


def test_cv_refuses_a_recipe_that_sets_a_fold_and_too_many_folds(tmp_path):
    with pytest.raises(ConfigError, match="already sets data.fold"):
        cross_validate({**TINY, "data": {**TINY["data"], "fold": {"folds": 2, "index": 1}}}, out=tmp_path / "a")
    with pytest.raises(Exception, match="class '0' has 6 labelled image.*7 folds"):
        cross_validate(TINY, folds=7, out=tmp_path / "b", verbose=0)
