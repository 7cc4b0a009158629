"""The one evaluation path: predict a dataset, then score the predictions.

Training's end, ``restransfer evaluate``, cross-validation and the interpretation files all call
:func:`predict` (with or without test-time augmentation views) and :func:`evaluation_report`, so
a run's ``metrics.json`` and ``evaluate RUN`` on the same data give the same numbers. Every score
is scikit-learn's (``classification_report``, ``balanced_accuracy_score``, ``confusion_matrix``);
:func:`confusion_matrix` is the package's only computation of one. A ``multi_label`` task's labels
are 0/1 rows and its scores those of `restransfer.diagnostics.multi_label` (mean average
precision, F1 at per-label thresholds chosen on validation data, exact match).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import numpy as np

from restransfer.errors import ConfigError


def predict_dataset(model, dataset, multi_label: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, C], labels [N])`` over a dataset of ``(images, one-hot)`` batches.

    With ``multi_label`` the targets are 0/1 rows and ``labels`` is that ``[N, C]`` matrix.
    """
    labels = [(np.asarray(targets) > 0.5).astype(np.int64) if multi_label else np.argmax(np.asarray(targets), axis=-1)
              for _, targets in dataset]
    if not labels:
        raise ConfigError("The evaluation dataset is empty.")
    # predict() over the whole (unshuffled) dataset, not predict_on_batch: under a distribution
    # strategy predict_on_batch returns one output per replica.
    probabilities = quiet_predict(model, dataset.map(lambda images, targets: images))
    return np.asarray(probabilities, dtype=np.float32), np.concatenate(labels)


@contextlib.contextmanager
def end_of_data_quiet():
    """Keras' "Your input ran out of data" warning silenced: file datasets have no known length (a
    file broken after the data check is dropped, and counted), so Keras learns a pass's end from
    the data running out and warns each time."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        yield


def quiet_predict(model, images) -> np.ndarray:
    """``model.predict`` over a dataset of image batches, without Keras' end-of-data warning."""
    with end_of_data_quiet():
        return model.predict(images, verbose=0)


def quiet_evaluate(model, dataset) -> dict:
    """``model.evaluate`` over a dataset (its compiled metrics by name), without the end-of-data warning."""
    with end_of_data_quiet():
        return model.evaluate(dataset, verbose=0, return_dict=True)


def predict(model, dataset, views: Sequence | None = None, multi_label: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, labels)`` of a dataset: plain, or the mean over test-time augmentation ``views``.

    Each view (``restransfer.data.tta``) runs as one ``predict`` over the whole (unshuffled)
    dataset, as plain evaluation does, so a distribution strategy splits it the same way.
    ``multi_label``: the labels are 0/1 rows (:func:`predict_dataset`).
    """
    if not views:
        return predict_dataset(model, dataset, multi_label)
    from restransfer.data.memory_store import do_not_convert

    probabilities, labels = predict_dataset(model, dataset.map(
        do_not_convert(lambda images, targets: (views[0].apply(images), targets))), multi_label)
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


def evaluation_report(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *,
                      task: str = "single_label", thresholds: Sequence[float] | None = None,
                      thresholds_from: str | None = None) -> dict:
    """Accuracy, balanced accuracy, macro F1, top-5 accuracy (more than 5 classes), loss, expected
    calibration error, per-class scores ``{label: {precision, recall, f1, support}}`` and the
    confusion matrix (rows true, columns predicted).

    A ``multi_label`` task gets :func:`multi_label_evaluation` instead.

    Args:
        probabilities: ``[N, C]`` model outputs.
        labels: ``[N]`` true class ids (``[N, C]`` 0/1 rows for ``multi_label``).
        class_names: the name of each class id (``C`` names).
        task: ``single_label`` or ``multi_label``.
        thresholds: ``multi_label`` only: one decision threshold per label (default: chosen on
            these images); ``thresholds_from`` says where they came from.

    Example:
        >>> report = evaluation_report(np.eye(3)[[0, 1, 2]], np.array([0, 1, 1]), ["a", "b", "c"])
        >>> round(report["accuracy"], 3), round(report["balanced_accuracy"], 3)
        (0.667, 0.75)
    """
    if task == "multi_label":
        return multi_label_evaluation(probabilities, labels, class_names, thresholds, thresholds_from)
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


def multi_label_evaluation(probabilities: np.ndarray, labels: np.ndarray, label_names: Sequence[str],
                           thresholds: Sequence[float] | None = None, thresholds_from: str | None = None) -> dict:
    """A multi-label evaluation: `multi_label_report`'s scores plus ``task`` and ``num_images``.

    Without ``thresholds`` each label's is chosen on these images (its best F1,
    `choose_thresholds`): what training's end does on the validation set; ``evaluate RUN`` passes
    the run's own (``thresholds.json``), so its figures on the same images are the same.
    """
    from restransfer.diagnostics.multi_label import DEFAULT_THRESHOLD, choose_thresholds, multi_label_report

    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape != labels.shape or probabilities.shape[1] != len(label_names):
        raise ConfigError(f"Multi-label probabilities and labels must both be [N, {len(label_names)}] (one column per "
                          f"label); received shapes {probabilities.shape} and {labels.shape}.")
    if thresholds is None:
        thresholds = choose_thresholds(probabilities, labels)
        thresholds_from = (f"chosen on these {len(labels)} images: each label's threshold with the best F1 "
                           f"({DEFAULT_THRESHOLD} where a label has no positive)")
    thresholds = np.asarray(thresholds, np.float64)
    if thresholds.shape != (len(label_names),):
        raise ConfigError(f"{thresholds.size} thresholds for {len(label_names)} labels; give one per label.")
    report = multi_label_report(probabilities, labels, label_names, thresholds=thresholds,
                                threshold_source=thresholds_from or "given")
    return {"task": "multi_label", "num_images": int(len(labels)), **report}


def headline(report: dict) -> str:
    """A report's main figures in a few words (a plot's title): accuracy, or mAP and macro F1.

    Example:
        >>> headline({"accuracy": 0.5})
        'accuracy 0.500'
    """
    if report.get("task") == "multi_label":
        average_precision = "n/a" if report["map"] is None else f"{report['map']:.3f}"
        return f"mAP {average_precision}, macro F1 {report['macro_f1']:.3f}"
    return f"accuracy {report['accuracy']:.3f}"


def evaluate_model(model, dataset, class_names: Sequence[str], views: Sequence | None = None, *,
                   task: str = "single_label", thresholds: Sequence[float] | None = None,
                   thresholds_from: str | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Predict ``dataset`` (through ``views`` when given) and score it: ``(report, probabilities, labels)``.

    ``task``, ``thresholds`` and ``thresholds_from`` as :func:`evaluation_report` takes them.
    """
    probabilities, labels = predict(model, dataset, views, multi_label=task == "multi_label")
    report = evaluation_report(probabilities, labels, class_names, task=task, thresholds=thresholds,
                               thresholds_from=thresholds_from)
    return report, probabilities, labels


def _balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """scikit-learn's balanced accuracy: the mean recall over the classes that have images."""
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # A class predicted but absent from the labels is left out of the mean; nothing to warn about.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(labels, predicted))


__all__ = ["confusion_matrix", "end_of_data_quiet", "evaluate_model", "evaluation_report", "headline", "multi_label_evaluation", "per_image_loss",
           "predict",
           "predict_dataset", "quiet_evaluate", "quiet_predict"]
