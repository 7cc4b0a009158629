"""A linear probe fitted as one Dense layer's weights: how a classifier head can start (LP-FT).

``restransfer.training.head_init`` starts a head from it, and ``restransfer.diagnostics.probe``
scores each stage's features with it.
"""

from __future__ import annotations

import numpy as np

from restransfer.errors import ConfigError


def class_ids(labels) -> np.ndarray:
    """Integer class ids from one-hot ``[N, classes]`` or integer ``[N]`` labels."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.argmax(axis=-1)
    if labels.ndim == 1:
        return labels.astype(np.int64)
    raise ConfigError(f"labels must be one-hot [N, classes] or integer [N]. Received shape {labels.shape}.")


def fit_softmax_probe(features, labels, num_classes: int, *, c: float = 1.0,
                      class_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit a logistic regression on standardised features; return it as one Dense layer's weights.

    The scaler is folded into the weights, so ``softmax(features @ kernel + bias)`` gives the
    fitted probabilities on the raw features: a classifier head can start from it (LP-FT,
    Kumar et al. 2022). Binary problems become the equivalent two-class softmax.

    Args:
        features: ``[N, D]`` pooled features.
        labels: one-hot ``[N, classes]`` or integer ``[N]``.
        num_classes: classes of the head; every one must occur in ``labels``.
        c: inverse L2 regularisation strength (scikit-learn's ``C``).
        class_weight: a weight per class (the run's class weights), or None.

    Returns:
        ``(kernel [D, num_classes], bias [num_classes])`` as float32.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = class_ids(labels)
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ConfigError(f"A probe needs training images of every class; classes {missing} have none.")
    scaler = StandardScaler().fit(features)
    weights = None if class_weight is None else {i: float(w) for i, w in enumerate(class_weight)}
    fitted = LogisticRegression(C=c, max_iter=5000, class_weight=weights).fit(scaler.transform(features), labels)
    coef, intercept = fitted.coef_, fitted.intercept_
    if num_classes == 2:  # one logit difference -> two logits with the same softmax
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    kernel = (coef / scaler.scale_).T
    bias = intercept - kernel.T @ scaler.mean_
    return kernel.astype(np.float32), bias.astype(np.float32)


def fit_sigmoid_probe(features, labels, *, c: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One logistic regression per label on standardised features, as one sigmoid Dense layer's weights.

    ``sigmoid(features @ kernel + bias)[:, j]`` is label ``j``'s fitted probability (the scaler is
    folded in, as in `fit_softmax_probe`). A label that every training image has, or none has,
    cannot be fitted; its column keeps a zero kernel and the bias of its training rate (clipped
    away from 0 and 1), so the head starts at what the data say about it.

    Args:
        features: ``[N, D]`` pooled features.
        labels: the 0/1 label matrix ``[N, labels]``.
        c: inverse L2 regularisation strength (scikit-learn's ``C``).

    Returns:
        ``(kernel [D, labels], bias [labels])`` as float32.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = np.asarray(labels) > 0.5
    scaler = StandardScaler().fit(features)
    scaled = scaler.transform(features)
    coef = np.zeros((labels.shape[1], features.shape[1]))
    intercept = np.zeros(labels.shape[1])
    for j in range(labels.shape[1]):
        column = labels[:, j]
        if column.all() or not column.any():
            rate = np.clip(column.mean(), 1e-3, 1 - 1e-3)
            intercept[j] = np.log(rate / (1 - rate))
            continue
        fitted = LogisticRegression(C=c, max_iter=5000).fit(scaled, column)
        coef[j], intercept[j] = fitted.coef_[0], fitted.intercept_[0]
    kernel = (coef / scaler.scale_).T
    bias = intercept - kernel.T @ scaler.mean_
    return kernel.astype(np.float32), bias.astype(np.float32)


__all__ = ["class_ids", "fit_sigmoid_probe", "fit_softmax_probe"]
