"""The one evaluation path: predict a dataset, then score the predictions.

Training's end, ``restransfer evaluate``, cross-validation and the interpretation files all call
:func:`predict` (with or without test-time augmentation views) and :func:`evaluation_report`, so
a run's ``metrics.json`` and ``evaluate RUN`` on the same data give the same numbers. Every score
is scikit-learn's (``classification_report``, ``balanced_accuracy_score``, ``confusion_matrix``);
:func:`confusion_matrix` is the package's only computation of one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from restransfer.errors import ConfigError


def predict_dataset(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, C], labels [N])`` over a dataset of ``(images, one-hot)`` batches."""
    labels = [np.argmax(np.asarray(targets), axis=-1) for _, targets in dataset]
    if not labels:
        raise ConfigError("The evaluation dataset is empty.")
    # predict() over the whole (unshuffled) dataset, not predict_on_batch: under a distribution
    # strategy predict_on_batch returns one output per replica.
    probabilities = quiet_predict(model, dataset.map(lambda images, targets: images))
    return np.asarray(probabilities, dtype=np.float32), np.concatenate(labels)


def quiet_predict(model, images) -> np.ndarray:
    """``model.predict`` over a dataset of image batches, without Keras' end-of-data warning."""
    with warnings.catch_warnings():
        # File datasets have no known length, so Keras learns their end from the data running out.
        warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        return model.predict(images, verbose=0)


def predict(model, dataset, views: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, labels)`` of a dataset: plain, or the mean over test-time augmentation ``views``.

    Each view (``restransfer.data.tta``) runs as one ``predict`` over the whole (unshuffled)
    dataset, as plain evaluation does, so a distribution strategy splits it the same way.
    """
    if not views:
        return predict_dataset(model, dataset)
    from restransfer.data.memory_store import do_not_convert

    probabilities, labels = predict_dataset(model, dataset.map(
        do_not_convert(lambda images, targets: (views[0].apply(images), targets))))
    for view in views[1:]:
        images = dataset.map(do_not_convert(lambda images, targets, view=view: view.apply(images)))
        probabilities = probabilities + np.asarray(quiet_predict(model, images), np.float32)
    return probabilities / len(views), labels


def per_image_loss(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each image, ``-log p(true class)`` (probabilities clipped at 1e-7 as Keras does)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ConfigError(f"probabilities [N, C] and labels [N] must match; received shapes "
                          f"{probabilities.shape} and {labels.shape}.")
    picked = probabilities[np.arange(len(labels)), labels]
    return -np.log(np.clip(picked, 1e-7, 1.0))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` over the class ids ``0..num_classes-1`` (scikit-learn's)."""
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

    return sklearn_confusion_matrix(np.asarray(labels, np.int64), np.asarray(predicted, np.int64),
                                    labels=list(range(num_classes))).astype(np.int64)


def evaluation_report(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, top-5 accuracy (more than 5 classes), loss, expected
    calibration error, per-class scores ``{label: {precision, recall, f1, support}}`` and the
    confusion matrix (rows true, columns predicted).

    Args:
        probabilities: ``[N, C]`` model outputs.
        labels: ``[N]`` true class ids.
        class_names: the name of each class id (``C`` names).

    Example:
        >>> report = evaluation_report(np.eye(3)[[0, 1, 2]], np.array([0, 1, 1]), ["a", "b", "c"])
        >>> round(report["accuracy"], 3), round(report["balanced_accuracy"], 3)
        (0.667, 0.75)
    """
    from sklearn.metrics import classification_report

    from restransfer.training.calibration import expected_calibration_error

    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != num_classes:
        raise ConfigError(f"The probabilities have shape {probabilities.shape}; {num_classes} class names need "
                          f"[N, {num_classes}].")
    predicted = probabilities.argmax(axis=-1)
    report = {
        "num_images": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": _balanced_accuracy(labels, predicted),
        "loss": float(np.mean(per_image_loss(probabilities, labels))),
        "ece": expected_calibration_error(probabilities, labels),
    }
    if num_classes > 5:
        top5 = np.argsort(-probabilities, axis=-1)[:, :5]
        report["top5_accuracy"] = float(np.mean((top5 == labels[:, None]).any(axis=-1)))
    per_class = classification_report(labels, predicted, labels=list(range(num_classes)),
                                      target_names=list(class_names), output_dict=True, zero_division=0)
    report["per_class"] = {name: {"precision": float(per_class[name]["precision"]),
                                  "recall": float(per_class[name]["recall"]),
                                  "f1": float(per_class[name]["f1-score"]),
                                  "support": int(per_class[name]["support"])}
                           for name in class_names}
    report["macro_f1"] = float(per_class["macro avg"]["f1-score"])
    report["confusion_matrix"] = confusion_matrix(labels, predicted, num_classes).tolist()
    return report


def evaluate_model(model, dataset, class_names: Sequence[str], views: Sequence | None = None
                   ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Predict ``dataset`` (through ``views`` when given) and score it: ``(report, probabilities, labels)``."""
    probabilities, labels = predict(model, dataset, views)
    return evaluation_report(probabilities, labels, class_names), probabilities, labels


def _balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """scikit-learn's balanced accuracy: the mean recall over the classes that have images."""
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # A class predicted but absent from the labels is left out of the mean; nothing to warn about.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(labels, predicted))


__all__ = ["confusion_matrix", "evaluate_model", "evaluation_report", "per_image_loss", "predict",
           "predict_dataset", "quiet_predict"]
