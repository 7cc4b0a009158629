"""`restransfer bench multilabel`: the logistic-regression baseline and the summary are what they say."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

from restransfer.bench.multilabel import SMOKE, _logistic_regression, markdown_summary, summarize


def test_the_baseline_is_one_logistic_regression_per_label_scored_on_test():
    rng = np.random.default_rng(0)
    x = {split: rng.normal(size=(n, 5)) for split, n in (("train", 60), ("val", 30), ("test", 30))}
    y = {split: (x[split][:, :3] + rng.normal(scale=0.5, size=(len(x[split]), 3)) > 0).astype(int) for split in x}
    report = _logistic_regression(x, y, ["a", "b", "c"], SMOKE)
    scaler = StandardScaler().fit(x["train"])
    for j, name in enumerate("abc"):
        model = LogisticRegression(C=SMOKE.logreg_c, max_iter=SMOKE.logreg_max_iter)
        p = model.fit(scaler.transform(x["train"]), y["train"][:, j]).predict_proba(scaler.transform(x["test"]))[:, 1]
        assert report["per_label"][name]["ap"] == pytest.approx(average_precision_score(y["test"][:, j], p), abs=1e-6)
    assert report["thresholds_from"] == "chosen on the validation grids"


def test_the_summary_pairs_seeds_and_gives_mean_and_sd():
    records = [{"model": m, "seed": s, "test_map": v, "test_macro_f1": v, "test_micro_f1": v, "test_exact_match": v}
               for m, values in (("restransfer", (0.9, 0.8)), ("logreg_pixels", (0.7, 0.7))) for s, v in enumerate(values)]
    summary = summarize(records)
    assert summary["rows"][0]["test_map"] == {"mean": 0.85, "sd": 0.0707, "n": 2}
    assert summary["paired"]["restransfer_minus_logreg_pixels"]["test_map"]["mean"] == pytest.approx(0.15)
    assert "| restransfer | 0.850 +- 0.071 |" in markdown_summary(summary)
