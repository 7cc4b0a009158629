"""Multi-label scores and decision thresholds, all scikit-learn's.

A multi-label run's evaluation (`restransfer.diagnostics.evaluation` calls these for a
``multi_label`` task) reports the macro mean average precision (threshold-free), macro and micro F1,
per-label precision, recall, F1 and AP, and the exact-match ratio (scikit-learn's
``accuracy_score`` on label sets). The F1 figures need a threshold per label:
:func:`choose_thresholds` picks, on the validation set, the one that maximises each label's F1
(0.5 where the label has no positive there); the report says which thresholds it used.

Example:
    >>> y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    >>> p = np.array([[0.9, 0.2], [0.3, 0.4], [0.6, 0.7], [0.1, 0.1]])
    >>> report = multi_label_report(p, y, ["a", "b"], thresholds=choose_thresholds(p, y))
    >>> round(report["map"], 3), report["exact_match"]
    (1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Where a label has no positive in the validation set, nothing can choose its threshold.
DEFAULT_THRESHOLD = 0.5


def per_image_binary_loss(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each image's binary cross-entropy summed over its labels (what top losses ranks)."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1)


def choose_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per label, the probability threshold (``p >= t`` is predicted) with the best F1 on these images.

    Candidates are the label's distinct probabilities (scikit-learn's ``precision_recall_curve``);
    ties go to the highest threshold. The threshold returned lies halfway between the best
    candidate and the next lower probability: the same images are predicted here, and an export
    whose probabilities differ in the last bits (float32 elsewhere, another runtime) does not flip
    an image that sat exactly on it. A label without a positive keeps ``DEFAULT_THRESHOLD``.
    """
    from sklearn.metrics import precision_recall_curve

    probabilities, labels = np.asarray(probabilities), np.asarray(labels) > 0.5
    thresholds = np.full(labels.shape[1], DEFAULT_THRESHOLD, np.float64)
    for j in range(labels.shape[1]):
        if not labels[:, j].any():
            continue
        precision, recall, candidates = precision_recall_curve(labels[:, j], probabilities[:, j])
        precision, recall = precision[:-1], recall[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        best = float(candidates[np.flatnonzero(f1 == f1.max())[-1]])
        below = probabilities[:, j][probabilities[:, j] < best]
        thresholds[j] = (best + (float(below.max()) if below.size else 0.0)) / 2
    return thresholds


def multi_label_report(probabilities: np.ndarray, labels: np.ndarray, label_names: Sequence[str],
                       thresholds: np.ndarray | None = None, threshold_source: str = "0.5 for every label") -> dict:
    """Scores of per-label probabilities ``[N, L]`` against the 0/1 matrix ``labels`` ``[N, L]``.

    Returns:
        ``map`` (macro AP over labels with a positive), ``macro_f1``, ``micro_f1``, ``exact_match``,
        ``loss`` (mean binary cross-entropy per label), ``per_label`` ({name: precision, recall, f1,
        ap, support, threshold}), ``thresholds`` ({name: t}), ``thresholds_from`` and ``images``.
    """
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_recall_fscore_support

    probabilities = np.asarray(probabilities, np.float64)
    truth = (np.asarray(labels) > 0.5).astype(int)
    names = list(label_names)
    t = np.full(len(names), DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds, np.float64)
    predicted = (probabilities >= t).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    present = truth.sum(axis=0) > 0
    ap = np.full(len(names), np.nan)
    for j in np.flatnonzero(present):
        ap[j] = average_precision_score(truth[:, j], probabilities[:, j])
    per_label = {name: {"precision": float(precision[j]), "recall": float(recall[j]), "f1": float(f1[j]),
                        "ap": None if np.isnan(ap[j]) else float(ap[j]), "support": int(support[j]),
                        "threshold": float(t[j])} for j, name in enumerate(names)}
    return {
        "map": float(np.nanmean(ap)) if present.any() else None,
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "exact_match": float(accuracy_score(truth, predicted)),
        "loss": float(per_image_binary_loss(probabilities, truth).mean() / max(len(names), 1)),
        "per_label": per_label,
        "thresholds": {name: float(t[j]) for j, name in enumerate(names)},
        "thresholds_from": threshold_source,
        "images": int(len(truth)),
    }


__all__ = ["DEFAULT_THRESHOLD", "choose_thresholds", "multi_label_report", "per_image_binary_loss"]
