"""The one evaluation path's scores equal scikit-learn's, and predicting a dataset keeps its order."""

import numpy as np
import pytest
from sklearn import metrics

from restransfer.diagnostics.evaluation import confusion_matrix, evaluation_report
from restransfer.errors import ConfigError

NAMES = [f"c{i}" for i in range(7)]


def random_predictions(seed=0, n=120, classes=7):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes - 1, size=n)  # the last class has no images: zero support
    logits = rng.normal(size=(n, classes)) + 2.0 * np.eye(classes)[labels] * rng.random((n, 1))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probabilities.astype(np.float32), labels


def as_float64(probabilities):
    probabilities = probabilities.astype(np.float64)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def test_every_score_equals_scikit_learn():
    probabilities, labels = random_predictions()
    predicted = probabilities.argmax(axis=1)
    report = evaluation_report(probabilities, labels, NAMES)
    everything = list(range(len(NAMES)))
    assert report["num_images"] == len(labels)
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(labels, predicted), abs=0)
    with pytest.warns(UserWarning, match="not in y_true"):  # the class without images is predicted
        balanced = metrics.balanced_accuracy_score(labels, predicted)
    assert report["balanced_accuracy"] == pytest.approx(balanced, abs=1e-15)
    assert report["macro_f1"] == pytest.approx(
        metrics.f1_score(labels, predicted, labels=everything, average="macro", zero_division=0), abs=1e-15)
    assert report["loss"] == pytest.approx(
        metrics.log_loss(labels, as_float64(probabilities), labels=everything), rel=1e-6)
    assert report["top5_accuracy"] == pytest.approx(
        metrics.top_k_accuracy_score(labels, probabilities, k=5, labels=everything), abs=1e-15)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        labels, predicted, labels=everything, zero_division=0)
    for i, name in enumerate(NAMES):
        row = report["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (precision[i], recall[i], f1[i], support[i]), abs=1e-15)
    assert report["per_class"]["c6"]["support"] == 0
    np.testing.assert_array_equal(report["confusion_matrix"],
                                  metrics.confusion_matrix(labels, predicted, labels=everything))
    assert sum(map(sum, report["confusion_matrix"])) == len(labels)


def test_a_wrong_prediction_moves_the_scores():
    labels = np.arange(30) % 3
    names = NAMES[:3]
    right = np.eye(3, dtype=np.float32)[labels]
    perfect = evaluation_report(right, labels, names)
    assert perfect["accuracy"] == perfect["balanced_accuracy"] == perfect["macro_f1"] == 1.0
    assert "top5_accuracy" not in perfect  # only with more than 5 classes
    wrong = right.copy()
    wrong[0] = np.roll(wrong[0], 1)
    report = evaluation_report(wrong, labels, names)
    assert report["accuracy"] == pytest.approx(29 / 30)
    assert report["confusion_matrix"][labels[0]][(labels[0] + 1) % 3] == 1


def test_confusion_matrix_keeps_classes_without_images_and_refuses_mismatched_names():
    matrix = confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 4)
    assert matrix.shape == (4, 4) and matrix.tolist()[0][:2] == [1, 1] and matrix[3].sum() == 0
    with pytest.raises(ConfigError, match="class names"):
        evaluation_report(np.full((3, 2), 0.5, np.float32), np.array([0, 1, 0]), NAMES[:3])
