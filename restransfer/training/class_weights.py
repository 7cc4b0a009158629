"""Class weights for imbalanced training data: which apply, why, and how a batch carries them.

``data.class_weight`` in a recipe:

- ``none``: every image weighs 1.
- ``balanced``: class ``c`` weighs ``n / (k * n_c)`` (scikit-learn's ``compute_class_weight``),
  so every class adds the same total to the loss.
- ``auto`` (the default): ``logit_adjusted`` when the largest training class has at least
  ``AUTO_RATIO`` times the images of the smallest, else ``none``.
- ``logit_adjusted``: no weights; the loss adds ``log(prior)`` to the logits instead
  (``restransfer.training.logit_adjustment``, Menon et al. 2021), ``prior`` being each class's share
  of the training images.
- ``logit_adjusted_posthoc``: no weights and the plain loss; the kept model's logits are lowered by
  ``log(prior)`` once training ends (the same paper's post-hoc adjustment, folded into the
  classifier's bias: ``restransfer.training.logit_adjustment.fold_prior``), so ``model.keras`` and
  every export predict as if every class had been equally frequent.
- ``{label: weight}``: the given weights; a class left out weighs 1.

A batch carries its weights as Keras sample weights, one per image: the expected class weight
under the image's label, ``sum_c y_c * w_c``. For a one-hot label that is its class's weight; for
a MixUp or CutMix label ``lam * y_a + (1 - lam) * y_b`` it is ``lam * w_a + (1 - lam) * w_b``,
the weight that the mixed cross-entropy's two terms would each carry. Validation data is never
weighted, so ``val_loss`` and ``val_accuracy`` keep their meaning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from restransfer.errors import ConfigError, did_you_mean

CLASS_WEIGHT_MODES = ("auto", "balanced", "logit_adjusted", "logit_adjusted_posthoc", "none")
# Largest over smallest training class from which `auto` weighs the classes.
AUTO_RATIO = 3.0


@dataclass(frozen=True)
class ClassWeights:
    """The class weights a run trains with, and why.

    Attributes:
        weights: ``{label: weight}`` in class order, or ``None`` when every image weighs 1.
        reason: what decided it, in words (for ``train.log``).
        prior: ``{label: share of the training images}`` when the loss is logit-adjusted, else ``None``.
        posthoc_prior: the same shares when the kept model's logits are adjusted after training, else ``None``.
    """

    weights: dict[str, float] | None
    reason: str
    prior: dict[str, float] | None = None
    posthoc_prior: dict[str, float] | None = None

    @property
    def applied(self) -> bool:
        return self.weights is not None

    def vector(self) -> np.ndarray | None:
        """The weights as a float32 vector in class order, or ``None``."""
        return None if self.weights is None else np.array(list(self.weights.values()), np.float32)

    def describe(self) -> str:
        if self.weights is None:
            return f"Class weights: none ({self.reason})."
        shown = ", ".join(f"{label} {weight:.3g}" for label, weight in self.weights.items())
        return f"Class weights ({self.reason}): {shown}."


def balanced_weights(counts: Sequence[int]) -> np.ndarray:
    """``n / (k * n_c)`` per class, from scikit-learn's ``compute_class_weight("balanced")``.

    Example:
        >>> balanced_weights([30, 10]).round(3).tolist()
        [0.667, 2.0]
    """
    from sklearn.utils.class_weight import compute_class_weight

    counts = np.asarray(counts, dtype=np.int64)
    if counts.min(initial=1) < 1:
        raise ConfigError(f"Class weights need at least one training image per class; the counts are "
                          f"{counts.tolist()}.")
    classes = np.arange(len(counts))
    return compute_class_weight("balanced", classes=classes, y=np.repeat(classes, counts)).astype(np.float64)


def decide_class_weights(setting: str | Mapping[str, Any] | None, counts: Sequence[int],
                         class_names: Sequence[str]) -> ClassWeights:
    """The class weights ``setting`` (``data.class_weight``) gives for these training counts.

    Args:
        setting: one of ``CLASS_WEIGHT_MODES`` (``None`` is ``none``) or ``{label: weight}``.
        counts: training images per class, in class order.
        class_names: the labels, in class order.

    Raises:
        ConfigError: a mapping names a label that is not a class, or a weight is not positive.

    Example:
        >>> decide_class_weights("balanced", [36, 3], ["a", "b"]).weights
        {'a': 0.5416666666666666, 'b': 6.5}
        >>> decide_class_weights("auto", [36, 3], ["a", "b"]).prior
        {'a': 0.9230769230769231, 'b': 0.07692307692307693}
        >>> decide_class_weights("auto", [20, 10], ["a", "b"]).reason
        'auto: largest class / smallest = 20 / 10 = 2 < 3'
    """
    names = [str(name) for name in class_names]
    counts = [int(c) for c in counts]
    if setting is None or setting == "none":
        return ClassWeights(None, "data.class_weight: none")
    if isinstance(setting, Mapping):
        return ClassWeights(_given(setting, names), "data.class_weight: given per label")
    if setting == "logit_adjusted":
        return ClassWeights(None, "data.class_weight: logit_adjusted", prior=_prior(counts, names))
    if setting == "logit_adjusted_posthoc":
        return ClassWeights(None, "data.class_weight: logit_adjusted_posthoc",
                            posthoc_prior=_prior(counts, names))
    if setting == "balanced":
        return ClassWeights(dict(zip(names, balanced_weights(counts).tolist())),
                            "data.class_weight: balanced, n / (k * n_class)")
    if setting != "auto":
        raise ConfigError(f"data.class_weight must be one of {', '.join(CLASS_WEIGHT_MODES)} or {{label: weight}}; "
                          f"received {setting!r}.")
    largest, smallest = max(counts), min(counts)
    ratio = largest / max(smallest, 1)
    compared = f"largest class / smallest = {largest} / {smallest} = {ratio:.3g}"
    if ratio < AUTO_RATIO:
        return ClassWeights(None, f"auto: {compared} < {AUTO_RATIO:g}")
    # Not balanced weights: on the imbalance benchmark's folder (few images, fitted perfectly)
    # they did not raise the smallest class's recall; logit adjustment did (benchmarks page).
    return ClassWeights(None, f"auto: {compared} >= {AUTO_RATIO:g}, logit-adjusted loss (log of each class's "
                              "share of the training images added to its logit)", prior=_prior(counts, names))


def _prior(counts: Sequence[int], names: list[str]) -> dict[str, float]:
    if min(counts, default=1) < 1:
        raise ConfigError(f"Logit adjustment needs at least one training image per class; the counts are {counts}.")
    return {name: count / sum(counts) for name, count in zip(names, counts)}


def _given(setting: Mapping[str, Any], names: list[str]) -> dict[str, float]:
    weights = {name: 1.0 for name in names}
    for label, weight in setting.items():
        label = str(label)
        if label not in weights:
            raise ConfigError(f"data.class_weight names '{label}', which is not a class of the training data; the "
                              f"classes are {', '.join(names)}.{did_you_mean(label, names)}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1e6:
            raise ConfigError(f"data.class_weight.{label} must be a number in (0, 1e6]; received {weight!r}.")
        weights[label] = float(weight)
    return weights


def sample_weights(labels: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Each image's weight: the expected class weight under its (one-hot or soft) label.

    Example:
        >>> sample_weights(np.array([[1.0, 0.0], [0.25, 0.75]]), np.array([1.0, 3.0])).tolist()
        [1.0, 2.5]
    """
    return np.asarray(labels, np.float32) @ np.asarray(vector, np.float32)


def weigh_batches(dataset, vector: np.ndarray | None):
    """``(inputs, labels)`` batches as ``(inputs, labels, sample_weights)``; unchanged without weights.

    Works on any batched ``tf.data`` dataset of one-hot or soft labels: images from the
    pipeline (after augmentation, so MixUp and CutMix labels are weighed as mixed) or the
    feature cache's features.
    """
    if vector is None:
        return dataset
    import tensorflow as tf

    from restransfer.data.memory_store import do_not_convert

    weights = tf.constant(np.asarray(vector, np.float32))

    @do_not_convert
    def weigh(inputs, labels):
        return inputs, labels, tf.linalg.matvec(tf.cast(labels, tf.float32), weights)

    return dataset.map(weigh, num_parallel_calls=tf.data.AUTOTUNE)
