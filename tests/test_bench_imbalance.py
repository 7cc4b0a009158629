"""The imbalance benchmark's baseline and summary: scikit-learn's logistic regression on the folders'
pixels scores as sklearn does on the same arrays, and every setting is paired with `none` per seed."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from restransfer.bench.imbalance import logreg_records, summarize, write_digit_folders
from restransfer.data.sources import optical_counts_to_rgb


def test_logreg_baseline_equals_scikit_learn_on_the_same_digits(tmp_path):
    data = write_digit_folders(tmp_path, (12, 6, 3), val_per_class=4, test_per_class=5, seed=3, digits=(5, 6, 7))
    records = {r["class_weight"]: r for r in logreg_records(data, seed=3)}
    assert set(records) == {"logreg_none", "logreg_balanced"}
    # The same draw from scikit-learn's arrays (write_digit_folders' permutation), without the PNG files.
    digits = load_digits()
    pixels = np.round(optical_counts_to_rgb(digits.images)).astype(np.uint8).reshape(len(digits.images), -1) / 255.0
    rng = np.random.default_rng(3)
    parts = {"train": ([], []), "test": ([], [])}
    for label, (digit, n) in enumerate(zip((5, 6, 7), (12, 6, 3))):
        members = rng.permutation(np.flatnonzero(digits.target == digit))
        for part, chosen in (("train", members[:n]), ("test", members[n + 4:n + 9])):
            parts[part][0].extend(pixels[chosen])
            parts[part][1].extend([label] * len(chosen))
    for name, class_weight in (("logreg_none", None), ("logreg_balanced", "balanced")):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight=class_weight))
        model.fit(*(np.asarray(a) for a in parts["train"]))
        predicted = model.predict(np.asarray(parts["test"][0]))
        expected = balanced_accuracy_score(parts["test"][1], predicted)
        assert records[name]["test_balanced_accuracy"] == pytest.approx(expected)
        assert records[name]["smallest_class"] == "7"
        truth = np.asarray(parts["test"][1])
        assert records[name]["test_smallest_class_recall"] == pytest.approx(np.mean(predicted[truth == 2] == 2))


def test_every_setting_is_paired_with_none_per_seed():
    def record(seed, weighting, recall):
        return {"seed": seed, "class_weight": weighting, "tta": False, "test_balanced_accuracy": 0.9,
                "test_macro_f1": 0.9, "test_smallest_class_recall": recall, "val_balanced_accuracy": 0.9}

    records = [record(0, "none", 0.5), record(1, "none", 0.7), record(0, "auto", 0.8), record(1, "auto", 0.6),
               record(0, "logreg_none", 0.5), record(1, "logreg_none", 0.9)]
    summary = summarize(records)
    paired = summary["minus_none"]["auto"]["tta_off"]["test_smallest_class_recall"]
    assert paired["mean"] == pytest.approx(0.1) and paired["sd"] == pytest.approx(np.std([0.3, -0.1], ddof=1), abs=1e-4)
    assert (paired["seeds_higher"], paired["seeds_lower"]) == (1, 1)
    assert summary["auto_minus_none"] == summary["minus_none"]["auto"]
    logreg = summary["minus_none"]["logreg_none"]["tta_off"]["test_smallest_class_recall"]
    assert (logreg["seeds_higher"], logreg["seeds_lower"]) == (1, 0)
    assert "none" not in summary["minus_none"]
    rows = {row["class_weight"]: row for row in summary["rows"]}
    assert set(rows) == {"none", "auto", "logreg_none"} and rows["auto"]["seeds"] == [0, 1]
    assert rows["none"]["test_smallest_class_recall"]["mean"] == pytest.approx(0.6)
