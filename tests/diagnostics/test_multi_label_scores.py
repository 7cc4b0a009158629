"""Multi-label scores equal scikit-learn's; thresholds maximise each label's F1 on the data they are chosen on."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, log_loss

from restransfer.diagnostics.multi_label import choose_thresholds, multi_label_report, per_image_binary_loss


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = (rng.random((120, 4)) < [0.5, 0.2, 0.4, 0.0]).astype(int)
    p = np.clip(0.35 * y + 0.65 * rng.random((120, 4)), 0.01, 0.99)
    return p, y


def test_the_report_is_scikit_learn_s(data):
    p, y = data
    report = multi_label_report(p, y, list("abcd"))
    predicted = (p >= 0.5).astype(int)
    assert report["map"] == pytest.approx(np.mean([average_precision_score(y[:, j], p[:, j]) for j in range(3)]))
    assert report["per_label"]["d"]["ap"] is None and report["per_label"]["d"]["support"] == 0
    assert report["macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro", zero_division=0))
    assert report["micro_f1"] == pytest.approx(f1_score(y, predicted, average="micro", zero_division=0))
    assert report["exact_match"] == pytest.approx(accuracy_score(y, predicted))
    expected_loss = np.mean([log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(4)])
    assert report["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert per_image_binary_loss(p, y).shape == (120,)


def test_thresholds_maximise_each_label_s_f1_and_default_without_positives(data):
    p, y = data
    thresholds = choose_thresholds(p, y)
    assert thresholds[3] == 0.5
    for j in range(3):
        best = f1_score(y[:, j], p[:, j] >= thresholds[j])
        for t in np.unique(p[:, j]):
            assert f1_score(y[:, j], p[:, j] >= t) <= best + 1e-12
    report = multi_label_report(p, y, list("abcd"), thresholds=thresholds, threshold_source="validation F1")
    assert report["thresholds_from"] == "validation F1" and report["per_label"]["a"]["threshold"] == thresholds[0]
    assert report["macro_f1"] >= multi_label_report(p, y, list("abcd"))["macro_f1"]
