"""What a classifier gets wrong: the images with the highest loss and the most confused class pairs.

Everything here takes NumPy arrays (probabilities, integer labels, images) and plain names, so
a notebook can call it on any model's predictions; training's end and ``restransfer evaluate``
call :func:`write_evaluation_plots` on a run's validation data, which writes
``plots/confusion_matrix.png``, ``plots/top_losses.png``, ``plots/top_losses.csv`` and
``plots/most_confused.csv``. A multi-label evaluation (0/1 label rows) ranks each image by its
binary cross-entropy summed over the labels and writes ``plots/label_scores.png`` and
``plots/label_errors.csv`` (false positives and negatives per label) instead of a confusion matrix.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from restransfer.diagnostics.evaluation import confusion_matrix, per_image_loss, predict_dataset
from restransfer.errors import ConfigError
from restransfer.files import write_text

TOP_LOSSES_COLUMNS = ("rank", "path", "true", "predicted", "probability", "true_probability", "loss")
MOST_CONFUSED_COLUMNS = ("true", "predicted", "count", "share_of_true")
LABEL_ERRORS_COLUMNS = ("label", "support", "false_positives", "false_negatives", "threshold", "ap")


@dataclass
class TopLoss:
    """One image among the highest losses.

    Attributes:
        index: its position in the evaluated data (the order of ``labels``).
        path: its file (relative to the dataset root), or ``"val[index]"`` for in-memory data.
        true: its label; ``predicted`` the model's top class with ``probability``.
        true_probability: the probability given to the true class; ``loss = -log`` of it.
    """

    index: int
    path: str
    true: str
    predicted: str
    probability: float
    true_probability: float
    loss: float


@dataclass
class Interpretation:
    """What ``interpret_predictions`` (and ``restransfer.interpret(run)``) found and wrote.

    Attributes:
        top_losses: the highest-loss images, highest first.
        most_confused: ``(true, predicted, count)`` for every off-diagonal pair with a count,
            largest first.
        files: ``{"top_losses_png": path, "top_losses_csv": ..., "most_confused_csv": ...}``.
    """

    top_losses: list[TopLoss]
    most_confused: list[tuple[str, str, int]]
    files: dict[str, Path] = field(default_factory=dict)


def top_losses(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, n: int = 16,
               paths: Sequence[str] | None = None, split: str = "val") -> list[TopLoss]:
    """The ``n`` images with the highest loss, highest first (ties keep data order).

    Example:
        >>> rows = top_losses(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]), ["cat", "dog"], n=1)
        >>> rows[0].index, rows[0].predicted, round(rows[0].loss, 3)
        (1, 'dog', 1.609)
    """
    if n < 1:
        raise ConfigError(f"n must be a positive number of images. Received n={n}.")
    probabilities = np.asarray(probabilities, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if paths is not None and len(paths) != len(labels):
        raise ConfigError(f"{len(paths)} paths for {len(labels)} images; give one path per image.")
    losses = per_image_loss(probabilities, labels)
    order = np.argsort(-losses, kind="stable")[:n]
    predicted = probabilities.argmax(axis=-1)
    return [TopLoss(index=int(i), path=str(paths[i]) if paths is not None else f"{split}[{i}]",
                    true=str(class_names[labels[i]]), predicted=str(class_names[predicted[i]]),
                    probability=float(probabilities[i, predicted[i]]),
                    true_probability=float(probabilities[i, labels[i]]), loss=float(losses[i]))
            for i in order]


def multi_label_top_losses(probabilities: np.ndarray, labels: np.ndarray, label_names: Sequence[str],
                           thresholds: Sequence[float], *, n: int = 16, paths: Sequence[str] | None = None,
                           split: str = "val") -> list[TopLoss]:
    """The ``n`` images with the highest binary cross-entropy summed over their labels, highest first.

    ``true`` and ``predicted`` are label sets as the CSV writes them (``;``-joined, empty for none);
    ``predicted`` holds the labels at or above their ``thresholds``. ``probability`` is the
    probability of the image's worst label (the one with the largest loss) and
    ``true_probability`` what the model gave that label's true side (``p`` if present, else ``1 - p``).

    Example:
        >>> rows = multi_label_top_losses(np.array([[0.9, 0.8], [0.2, 0.1]]), np.array([[1, 0], [0, 0]]),
        ...                               ["cat", "dog"], [0.5, 0.5], n=1)
        >>> rows[0].index, rows[0].true, rows[0].predicted, round(rows[0].probability, 2)
        (0, 'cat', 'cat;dog', 0.8)
    """
    from restransfer.diagnostics.multi_label import per_image_binary_loss
    from restransfer.training.task import labels_text

    if n < 1:
        raise ConfigError(f"n must be a positive number of images. Received n={n}.")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(labels) > 0.5
    if paths is not None and len(paths) != len(truth):
        raise ConfigError(f"{len(paths)} paths for {len(truth)} images; give one path per image.")
    losses = per_image_binary_loss(probabilities, truth)
    side = np.clip(np.where(truth, probabilities, 1 - probabilities), 1e-7, 1.0)
    worst = np.argmin(side, axis=1)
    predicted = probabilities >= np.asarray(thresholds, np.float64)
    names = list(label_names)
    return [TopLoss(index=int(i), path=str(paths[i]) if paths is not None else f"{split}[{i}]",
                    true=labels_text([names[j] for j in np.flatnonzero(truth[i])]),
                    predicted=labels_text([names[j] for j in np.flatnonzero(predicted[i])]),
                    probability=float(probabilities[i, worst[i]]), true_probability=float(side[i, worst[i]]),
                    loss=float(losses[i]))
            for i in np.argsort(-losses, kind="stable")[:n]]


def label_errors_csv(probabilities: np.ndarray, labels: np.ndarray, report: dict) -> str:
    """Per label (``LABEL_ERRORS_COLUMNS``): its images, false positives and false negatives at the
    report's threshold, the threshold and the average precision, as CSV text."""
    truth = np.asarray(labels) > 0.5
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LABEL_ERRORS_COLUMNS)
    for j, (name, s) in enumerate(report["per_label"].items()):
        predicted = np.asarray(probabilities)[:, j] >= s["threshold"]
        writer.writerow([name, int(truth[:, j].sum()), int((predicted & ~truth[:, j]).sum()),
                         int((~predicted & truth[:, j]).sum()), f"{s['threshold']:.6f}",
                         "" if s["ap"] is None else f"{s['ap']:.6f}"])
    return buffer.getvalue()


def plot_label_scores(report: dict, path: str | Path, title: str = "") -> Path:
    """Bars of each label's average precision and F1 (at its threshold) from a multi-label report."""
    from matplotlib.figure import Figure

    from restransfer.training.plots import save_figure

    names = list(report["per_label"])
    ap = [report["per_label"][n]["ap"] or 0.0 for n in names]
    f1 = [report["per_label"][n]["f1"] for n in names]
    fig = Figure(figsize=(max(4.0, 0.6 * len(names) + 2), 3.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    ax.bar(x - 0.2, ap, width=0.4, label="average precision")
    ax.bar(x + 0.2, f1, width=0.4, label="F1 at the label's threshold")
    ax.set_xticks(x, names, rotation="vertical" if len(names) > 8 else "horizontal")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"per label: mAP {report['map'] or 0:.3f}, macro F1 {report['macro_f1']:.3f}", fontsize=10)
    return save_figure(fig, Path(path))


def most_confused(confusion: np.ndarray, class_names: Sequence[str], *, min_count: int = 1
                  ) -> list[tuple[str, str, int]]:
    """Off-diagonal cells of a confusion matrix (rows true, columns predicted) by count, largest first.

    Example:
        >>> most_confused(np.array([[5, 2], [0, 4]]), ["cat", "dog"])
        [('cat', 'dog', 2)]
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    if confusion.shape != (len(class_names), len(class_names)):
        raise ConfigError(f"The confusion matrix has shape {confusion.shape}; {len(class_names)} class names "
                          "need a square matrix of that size.")
    pairs = [(int(confusion[t, p]), t, p) for t in range(len(class_names)) for p in range(len(class_names))
             if t != p and confusion[t, p] >= min_count]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [(str(class_names[t]), str(class_names[p]), count) for count, t, p in pairs]


def top_losses_csv(rows: Sequence[TopLoss]) -> str:
    """The rows as CSV text with a header (``TOP_LOSSES_COLUMNS``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TOP_LOSSES_COLUMNS)
    for rank, row in enumerate(rows, start=1):
        writer.writerow([rank, row.path, row.true, row.predicted, f"{row.probability:.6f}",
                         f"{row.true_probability:.6f}", f"{row.loss:.6f}"])
    return buffer.getvalue()


def most_confused_csv(pairs: Sequence[tuple[str, str, int]], confusion: np.ndarray,
                      class_names: Sequence[str]) -> str:
    """The pairs as CSV text; ``share_of_true`` is the count over the true class's images."""
    support = {name: int(total) for name, total in zip(class_names, np.asarray(confusion).sum(axis=1))}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MOST_CONFUSED_COLUMNS)
    for true, predicted, count in pairs:
        writer.writerow([true, predicted, count, f"{count / support[true]:.4f}" if support[true] else ""])
    return buffer.getvalue()


def plot_top_losses(rows: Sequence[TopLoss], images: np.ndarray, path: str | Path, *,
                    columns: int | None = None, title: str = "") -> Path:
    """A grid of the images, each titled ``true / predicted / probability`` and its loss.

    Args:
        rows: from :func:`top_losses`.
        images: ``[len(rows), h, w, 3]`` RGB 0..255, in the order of ``rows``.
        path: the PNG to write (atomically).
    """
    from matplotlib.figure import Figure

    from restransfer.training.plots import save_figure

    if len(images) != len(rows):
        raise ConfigError(f"{len(images)} images for {len(rows)} top-loss rows; give one image per row.")
    count = max(len(rows), 1)
    columns = columns or min(count, 4 if count <= 8 else 6)
    lines = math.ceil(count / columns)
    fig = Figure(figsize=(2.2 * columns, 2.7 * lines + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(lines, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, row, image in zip(axes, rows, images):
        ax.imshow(np.clip(np.asarray(image), 0, 255).astype(np.uint8), interpolation="nearest")
        ax.set_title(f"{row.true or '(none)'} / {row.predicted or '(none)'} / {row.probability:.2f}\n"
                     f"loss {row.loss:.2f}",
                     fontsize=8, color="black" if row.true == row.predicted else "darkred")
    if not rows:
        axes[0].text(0.5, 0.5, "no images", ha="center", va="center")
    fig.suptitle(title or "top losses: true / predicted / probability", fontsize=10)
    return save_figure(fig, Path(path))


def dataset_images(dataset, indices: Sequence[int]) -> np.ndarray:
    """The images at ``indices`` (positions in an unshuffled dataset of ``(images, labels)`` batches).

    One pass that keeps only the wanted images, so showing 16 top losses of a large validation
    set never holds the whole set in memory.
    """
    wanted = {int(i): k for k, i in enumerate(indices)}
    found: dict[int, np.ndarray] = {}
    start = 0
    batches = dataset.as_numpy_iterator() if hasattr(dataset, "as_numpy_iterator") else dataset
    for images, _ in batches:
        images = np.asarray(images)
        for i in range(start, start + len(images)):
            if i in wanted:
                found[i] = images[i - start]
        start += len(images)
        if len(found) == len(wanted):
            break
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ConfigError(f"The dataset has {start} images; indices {missing[:5]} are beyond it.")
    return np.stack([found[int(i)] for i in indices]) if indices else np.zeros((0, 1, 1, 3), np.float32)


def interpret_model(model, dataset, class_names: Sequence[str], *, out_dir: str | Path,
                    paths: Sequence[str] | None = None, n: int = 16, split: str = "val",
                    suffix: str = "") -> Interpretation:
    """:func:`interpret_predictions` of a model on an unshuffled dataset of ``(images, one-hot labels)`` batches.

    Example:
        >>> from restransfer.data import load_data
        >>> data = load_data(source="digits", classes=[0, 1, 2], image_size=32)
        >>> result = interpret_model(model, data.val, data.class_names, out_dir="plots")  # a trained model
        >>> result.files["top_losses_png"].name
        'top_losses.png'
    """
    probabilities, labels = predict_dataset(model, dataset)
    return interpret_predictions(probabilities, labels, class_names,
                                 images=lambda idx: dataset_images(dataset, idx), out_dir=out_dir, paths=paths,
                                 n=n, split=split, suffix=suffix)


def interpret_predictions(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *,
              images: np.ndarray | Callable[[Sequence[int]], np.ndarray], out_dir: str | Path,
              paths: Sequence[str] | None = None, n: int = 16, split: str = "val",
              suffix: str = "", confusion: np.ndarray | None = None) -> Interpretation:
    """Top losses (PNG and CSV) and the most confused pairs (CSV) of one evaluation, written to ``out_dir``.

    Args:
        probabilities: ``[N, C]`` model outputs; ``labels`` ``[N]`` true class ids.
        class_names: the name of each class id.
        images: all ``N`` images ``[N, h, w, 3]`` (RGB 0..255), or a function that returns the
            images at the given indices (so a large dataset is not held in memory).
        out_dir: where the files go (a run's ``plots/``).
        paths: each image's file, relative to the dataset root; else ``"val[index]"``.
        n: how many top losses.
        suffix: added to the file names (``top_losses-test.png``), as evaluation does per split.
        confusion: the evaluation's confusion matrix when it has one (else computed here).

    Returns:
        An :class:`Interpretation` with the rows and the files written.
    """
    out_dir = Path(out_dir)
    if paths is not None and len(paths) != len(labels):
        paths = None  # a file dropped while reading (changed on disk): positions would mislead
    rows = top_losses(probabilities, labels, class_names, n=min(n, max(len(labels), 1)), paths=paths,
                      split=split)
    indices = [row.index for row in rows]
    picked = images(indices) if callable(images) else np.asarray(images)[indices]
    if confusion is None:
        confusion = confusion_matrix(labels, np.asarray(probabilities).argmax(axis=-1), len(class_names))
    pairs = most_confused(confusion, class_names)

    files = {"top_losses_png": out_dir / f"top_losses{suffix}.png",
             "top_losses_csv": out_dir / f"top_losses{suffix}.csv",
             "most_confused_csv": out_dir / f"most_confused{suffix}.csv"}
    plot_top_losses(rows, picked, files["top_losses_png"])
    write_text(files["top_losses_csv"], top_losses_csv(rows))
    write_text(files["most_confused_csv"], most_confused_csv(pairs, confusion, class_names))
    return Interpretation(top_losses=rows, most_confused=pairs, files=files)


def write_evaluation_plots(report: dict, probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                           *, dataset, out_dir: str | Path, paths: Sequence[str] | None = None, title: str = "",
                           n: int = 16, split: str = "val", suffix: str = "") -> Interpretation:
    """The files of one evaluation in ``out_dir``: the confusion matrix PNG and :func:`interpret_predictions`'.

    Args:
        report: from ``restransfer.diagnostics.evaluation.evaluation_report`` of ``probabilities``
            and ``labels``; its confusion matrix is the one drawn and ranked.
        dataset: the unshuffled dataset that was predicted (the top-loss images are read from it).
        title: the confusion matrix's title.
        suffix: added to every file name (``confusion_matrix-test.png``).
    """
    from restransfer.training.plots import plot_confusion_matrix

    out_dir = Path(out_dir)
    if report.get("task") == "multi_label":
        return _write_multi_label_plots(report, probabilities, labels, class_names, dataset=dataset, out_dir=out_dir,
                                        paths=paths, title=title, n=n, split=split, suffix=suffix)
    confusion = np.asarray(report["confusion_matrix"])
    plot_confusion_matrix(confusion, class_names, out_dir / f"confusion_matrix{suffix}.png", title=title)
    return interpret_predictions(probabilities, labels, class_names, images=lambda i: dataset_images(dataset, i),
                                 out_dir=out_dir, paths=paths, n=n, split=split, suffix=suffix, confusion=confusion)


def _write_multi_label_plots(report: dict, probabilities: np.ndarray, labels: np.ndarray, label_names: Sequence[str],
                             *, dataset, out_dir: Path, paths, title: str, n: int, split: str,
                             suffix: str) -> Interpretation:
    """A multi-label evaluation's files: per-label scores (PNG), label errors (CSV), top losses (PNG, CSV)."""
    if paths is not None and len(paths) != len(labels):
        paths = None  # a file dropped while reading (changed on disk): positions would mislead
    thresholds = [report["thresholds"][name] for name in label_names]
    rows = multi_label_top_losses(probabilities, labels, label_names, thresholds, n=min(n, max(len(labels), 1)),
                                  paths=paths, split=split)
    files = {"label_scores_png": out_dir / f"label_scores{suffix}.png",
             "label_errors_csv": out_dir / f"label_errors{suffix}.csv",
             "top_losses_png": out_dir / f"top_losses{suffix}.png",
             "top_losses_csv": out_dir / f"top_losses{suffix}.csv"}
    plot_label_scores(report, files["label_scores_png"], title=title)
    write_text(files["label_errors_csv"], label_errors_csv(probabilities, labels, report))
    plot_top_losses(rows, dataset_images(dataset, [row.index for row in rows]), files["top_losses_png"],
                    title="top losses: true / predicted (over thresholds) / probability of the worst label")
    write_text(files["top_losses_csv"], top_losses_csv(rows))
    return Interpretation(top_losses=rows, most_confused=[], files=files)
