"""Feature transfer probe: how linearly separable a target's classes are at each stage.

Each stage's output is frozen, global-average pooled and fed to a cross-validated logistic
regression (scikit-learn). High accuracy at an early stage means its features already serve
the target task: freezing up to there should cost little (Yosinski et al. 2014 measured the
same question by retraining; a linear probe answers it in seconds). The probe's fit is
``restransfer.training.linear_probe``'s, the one a classifier head can start from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from restransfer.errors import ConfigError
from restransfer.models.stages import HEAD, INPUT, model_stages
from restransfer.training.linear_probe import class_ids, fit_softmax_probe


@dataclass
class ProbeRow:
    """Cross-validated linear-probe accuracy of one stage's pooled features."""

    stage: str
    features: int
    accuracy: float
    std: float


def stage_features(model: keras.Model, images, stages: Sequence[str] | None = None, *,
                   batch_size: int = 64) -> dict[str, np.ndarray]:
    """Global-average-pooled output of each stage, in inference mode: ``{stage: [N, channels]}``.

    Args:
        model: a restransfer model (layers named by stage).
        images: inputs as the model takes them, e.g. float32 ``[N, h, w, 3]`` in 0..255.
        stages: which stages (default: every backbone stage, ``conv1`` ... ``conv5``).
        batch_size: images per forward pass.
    """
    by_stage = {s: layers for s, layers in model_stages(model).items() if s not in (INPUT, HEAD)}
    stages = list(by_stage) if stages is None else list(stages)
    unknown = [s for s in stages if s not in by_stage]
    if unknown:
        raise ConfigError(f"Model '{model.name}' has no stage {unknown}; its stages are {list(by_stage)}.")
    outputs = []
    for stage in stages:
        tensor = by_stage[stage][-1].output
        if len(tensor.shape) == 4:
            tensor = keras.layers.GlobalAveragePooling2D(name=f"probe_{stage}_pool")(tensor)
        outputs.append(tensor)
    extractor = keras.Model(model.inputs, outputs, name=f"{model.name}_features")
    features = extractor.predict(np.asarray(images, dtype="float32"), batch_size=batch_size, verbose=0)
    if len(stages) == 1:
        features = [features]
    return {stage: np.asarray(f) for stage, f in zip(stages, features)}


def probe_accuracy(features, labels, *, folds: int = 5, seed: int = 0, c: float = 1.0) -> tuple[float, float]:
    """Mean and standard deviation of a logistic regression's stratified k-fold accuracy.

    Example:
        >>> probe_accuracy(np.r_[np.zeros((20, 2)), np.ones((20, 2))], [0] * 20 + [1] * 20)
        (1.0, 0.0)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = class_ids(labels)
    smallest = int(np.unique(labels, return_counts=True)[1].min()) if len(labels) else 0
    if smallest < folds:
        raise ConfigError(
            f"{folds}-fold cross-validation needs at least {folds} examples of every class; the "
            f"smallest class has {smallest}. Give more examples or fewer folds."
        )
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    scores = cross_val_score(classifier, features, labels,
                             cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(scores.mean()), float(scores.std())


def holdout_probe_accuracy(train_features, train_labels, val_features, val_labels, *, c: float = 1.0) -> float:
    """Accuracy on ``val`` of the logistic regression `fit_softmax_probe` fits on ``train``.

    The reference for a head trained on frozen features: fitted on the same training images the
    head sees, scored on the validation images the run is scored on (no cross-validation over
    the validation images, which would let the probe see labels the head never sees).
    """
    train_ids = class_ids(train_labels)
    kernel, bias = fit_softmax_probe(train_features, train_ids, int(train_ids.max()) + 1, c=c)
    val = np.asarray(val_features, dtype=np.float64).reshape(len(val_features), -1)
    return float(np.mean(np.argmax(val @ kernel + bias, axis=-1) == class_ids(val_labels)))


def linear_probe(model: keras.Model, images, labels, *, stages: Sequence[str] | None = None,
                 folds: int = 5, seed: int = 0, batch_size: int = 64,
                 val: tuple | None = None) -> list[ProbeRow]:
    """Linear-probe accuracy of every backbone stage's frozen features on ``(images, labels)``.

    Args:
        val: ``(images, labels)`` to score on: each probe is fitted on ``(images, labels)`` and
            scored there once (`holdout_probe_accuracy`, ``std`` 0), as a head trained on the
            same images would be. Without it, ``folds``-fold cross-validation on ``images``.

    Example:
        >>> rows = linear_probe(model, x_target, y_target)
        >>> [(r.stage, round(r.accuracy, 2)) for r in rows]
        [('conv1', 0.61), ('conv2', 0.83), ('conv3', 0.9), ('conv4', 0.94)]
    """
    features = stage_features(model, images, stages, batch_size=batch_size)
    held_out = stage_features(model, val[0], stages, batch_size=batch_size) if val is not None else None
    rows = []
    for stage, values in features.items():
        if held_out is None:
            mean, std = probe_accuracy(values, labels, folds=folds, seed=seed)
        else:
            mean, std = holdout_probe_accuracy(values, labels, held_out[stage], val[1]), 0.0
        rows.append(ProbeRow(stage=stage, features=values.shape[-1], accuracy=mean, std=std))
    return rows


__all__ = ["ProbeRow", "class_ids", "fit_softmax_probe", "holdout_probe_accuracy", "linear_probe", "probe_accuracy",
           "stage_features"]
