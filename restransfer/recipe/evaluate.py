"""Evaluate a model on a dataset: accuracy, balanced accuracy, macro F1, top-5, calibration error, per-class
precision/recall/F1 and the confusion matrix (scikit-learn's metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from restransfer.errors import ConfigError


def predict_dataset(model: keras.Model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, C], labels [N])`` over a dataset of ``(images, one-hot)`` batches."""
    labels = [np.argmax(np.asarray(targets), axis=-1) for _, targets in dataset]
    if not labels:
        raise ConfigError("The evaluation dataset is empty.")
    # predict() over the whole (unshuffled) dataset, not predict_on_batch: under a distribution
    # strategy predict_on_batch returns one output per replica.
    probabilities = quiet_predict(model, dataset.map(lambda images, targets: images))
    return np.asarray(probabilities, dtype=np.float32), np.concatenate(labels)


def quiet_predict(model: keras.Model, images) -> np.ndarray:
    """``model.predict`` over a dataset of image batches, without Keras' end-of-data warning."""
    import warnings

    with warnings.catch_warnings():
        # File datasets have no known length, so Keras learns their end from the data running out.
        warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        return model.predict(images, verbose=0)


def evaluation_report(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, top-5 accuracy (more than 5 classes), loss, per-class
    scores ``{label: {precision, recall, f1, support}}`` and the confusion matrix.

    Example:
        >>> report = evaluation_report(np.eye(3)[[0, 1, 2]], np.array([0, 1, 1]), ["a", "b", "c"])
        >>> round(report["accuracy"], 3), round(report["balanced_accuracy"], 3)
        (0.667, 0.75)
    """
    from sklearn.metrics import classification_report, confusion_matrix

    from restransfer.training.calibration import expected_calibration_error

    num_classes = len(class_names)
    predicted = probabilities.argmax(axis=-1)
    picked = probabilities[np.arange(len(labels)), labels]
    report = {
        "num_images": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": _balanced_accuracy(labels, predicted),
        "loss": float(np.mean(-np.log(np.clip(picked, 1e-7, 1.0)))),
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
    report["confusion_matrix"] = confusion_matrix(labels, predicted, labels=list(range(num_classes))).tolist()
    return report


def _balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """scikit-learn's balanced accuracy: the mean recall over the classes that have images."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # A class predicted but absent from the labels is left out of the mean; nothing to warn about.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(labels, predicted))


def evaluate(run_dir: str | Path, *, data: str | Path | None = None, split: str = "val",
             batch_size: int | None = None, top_losses: int = 16, tta: bool = False,
             tta_crops: int | None = None) -> dict:
    """Evaluate a finished run's ``model.keras`` on its validation (or test) data or on a folder.

    Args:
        run_dir: the run folder.
        data: a folder with one subfolder per class (the run's class names); default: the
            recipe's own data. The folder alone is enough: the run's original data and weights
            need not exist any more.
        split: ``"val"`` or ``"test"`` of the recipe's data (ignored with ``data``).
        batch_size: images per batch; default the recipe's.
        top_losses: how many highest-loss images ``plots/top_losses[-NAME].png`` shows.
        tta: average the probabilities over each image and its horizontal flip.
        tta_crops: average that many crops (0-5) too (`restransfer.data.tta`).

    Returns:
        The report of ``evaluation_report``, also saved as ``evaluation[-NAME].json`` with a
        confusion matrix PNG in ``plots/``, and the interpretation files of :func:`interpret`
        beside it (``top_losses.png``, ``top_losses.csv``, ``most_confused.csv``).
    """
    report, _ = _evaluate(run_dir, data=data, split=split, batch_size=batch_size, top_losses=top_losses,
                          tta=tta, tta_crops=tta_crops)
    return report


def interpret(run_dir: str | Path, *, data: str | Path | None = None, split: str = "val",
              batch_size: int | None = None, top_losses: int = 16):
    """What a run's model gets wrong: its highest-loss images and most confused class pairs.

    Evaluates like :func:`evaluate` (and writes the same files) and returns the
    ``restransfer.diagnostics.interpret.Interpretation``: ``top_losses`` (path, true,
    predicted, probability, loss), ``most_confused`` ``(true, predicted, count)`` and ``files``.

    Example:
        >>> found = interpret("runs/quickstart/target")
        >>> found.most_confused[0]
        ('5', '9', 30)
    """
    _, found = _evaluate(run_dir, data=data, split=split, batch_size=batch_size, top_losses=top_losses)
    return found


def _evaluate(run_dir, *, data, split, batch_size, top_losses, tta=False, tta_crops=None):
    from restransfer.data import load_data
    from restransfer.diagnostics.interpret import dataset_images, interpret_predictions
    from restransfer.recipe.plan import run_plan
    from restransfer.recipe.tta import predict_dataset_tta, views_of
    from restransfer.runs import RunFolder
    from restransfer.training import checkpoint, plots

    folder = RunFolder(run_dir)
    model = folder.load_model()
    class_names = folder.check_outputs(model)
    plan = run_plan(folder)
    options = plan.data_options(augment={})
    if data is not None:
        data_path = Path(data).expanduser().resolve()
        if not data_path.is_dir():
            raise ConfigError(f"--data {data} is not a folder; give a folder with one subfolder per class.")
        keep = {k: options[k] for k in ("image_size", "resize", "batch_size", "skip_bad", "seed")}
        # Nothing of the recipe's data is needed; a file cache would need the run folder.
        cache = "auto" if options.get("cache") == "file" else options.get("cache", "auto")
        options = {**keep, "cache": cache, "source": "folder", "path": data_path, "val_path": data_path}
        suffix, split = "-" + data_path.name, "val"
    else:
        if plan.data.source == "arrays":
            raise ConfigError("This run trained on in-memory arrays; pass --data FOLDER to evaluate it.")
        suffix = "" if split == "val" else f"-{split}"
    if batch_size:
        options["batch_size"] = batch_size
    bundle = load_data(**options, run_dir=None)
    if list(bundle.class_names) != list(class_names):
        raise ConfigError(f"The evaluation data's classes {bundle.class_names} differ from the run's "
                          f"classes {class_names}.")
    dataset = bundle.val if split == "val" else bundle.test
    if dataset is None:
        raise ConfigError(f"The run's data has no {split} split.")
    views = views_of(tta, tta_crops)
    if views:
        probabilities, labels = predict_dataset_tta(model, dataset, views)
        suffix += "-tta"
    else:
        probabilities, labels = predict_dataset(model, dataset)
    report = evaluation_report(probabilities, labels, class_names)
    report["data"] = str(data) if data is not None else f"recipe {split} split"
    report["tta"] = [view.name for view in views] if views else None
    checkpoint.write_json(folder.path / f"evaluation{suffix}.json", report)
    plots.plot_confusion_matrix(np.asarray(report["confusion_matrix"]), class_names,
                                folder.plots / f"confusion_matrix{suffix}.png",
                                title=f"{report['data']}: accuracy {report['accuracy']:.3f}")
    found = interpret_predictions(probabilities, labels, class_names, images=lambda i: dataset_images(dataset, i),
                                  out_dir=folder.plots, paths=bundle.paths.get(split), n=top_losses, split=split,
                                  suffix=suffix)
    report["interpretation"] = {name: str(path) for name, path in found.files.items()}
    return report, found
