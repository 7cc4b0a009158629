"""The task a run learns: one label per image (softmax) or any number of labels (sigmoids).

``task: single_label`` (the default) gives each image exactly one class: the head ends in a
softmax, the loss is categorical cross-entropy and the kept epoch is the one with the best
validation accuracy. ``task: multi_label`` gives each image a set of labels, possibly empty (a
photo holds a dog *and* a car): the head ends in one float32 sigmoid per label, the loss is binary
cross-entropy over the labels (what Keras' ``BinaryCrossentropy`` and fastai's
``MultiCategoryBlock`` use), the figures are per label and the kept epoch is the one with the best
validation mean average precision.

The Plan decides each consequence once, with its reason (`restransfer.recipe.decisions`); this
module holds the rules, so the engine, the evaluation and the exports read decided values.
"""

from __future__ import annotations

from collections.abc import Sequence

TASKS = ("single_label", "multi_label")
# Sources that can give an image several labels: a CSV's `labels` column, an arrays 0/1 matrix.
MULTI_LABEL_SOURCES = ("csv", "arrays")
# Why each other source cannot: named in `validate`'s message.
_SINGLE_LABEL_ONLY = {
    "folder": "a class folder holds each image once, so an image has exactly one label",
    "tfds": "the TFDS reader takes one integer ClassLabel per image",
    "digits": "each scikit-learn digit shows one digit (`restransfer data grid` writes a multi-label CSV from them)",
    "glyphs": "each glyph image shows one character",
}


def task_source_problem(task: str, source: str) -> str | None:
    """Why ``source`` cannot carry ``task``'s labels, or None.

    Example:
        >>> task_source_problem("multi_label", "csv") is None
        True
        >>> task_source_problem("multi_label", "folder").startswith("the folder source")
        True
    """
    if task != "multi_label" or source in MULTI_LABEL_SOURCES:
        return None
    why = _SINGLE_LABEL_ONLY.get(source, "it gives one label per image")
    return (f"the {source} source cannot carry several labels per image ({why}). Use source: csv with a "
            "`labels` column of ';'-separated names, or source: arrays with a 0/1 label matrix.")


def task_data_problem(task: str, multi_label: bool, where: str = "the data") -> str | None:
    """Why data whose labels are (or are not) a 0/1 matrix cannot train ``task``, or None."""
    if multi_label and task != "multi_label":
        return (f"{where} gives several labels per image (a 'path,labels' CSV header or a 2-D label matrix) but "
                "the recipe's task is single_label. Set task: multi_label, or give one label per image "
                "(a 'path,label' header).")
    if not multi_label and task == "multi_label":
        return (f"{where} gives one class per image but the recipe's task is multi_label. Give a CSV whose "
                "header is 'path,labels' (';'-separated names, an empty cell for no label) or a 2-D 0/1 label "
                "matrix, or set task: single_label.")
    return None


def head_activation(task: str) -> tuple[str, str]:
    """The head's output activation for ``task`` and why."""
    if task == "multi_label":
        return "sigmoid", "task multi_label: each label is present or not, independently"
    return "softmax", "task single_label: the classes are exclusive"


def loss_name(task: str) -> tuple[str, str]:
    """The training loss for ``task`` and why."""
    if task == "multi_label":
        return "binary_crossentropy", "task multi_label: one binary cross-entropy per label, averaged"
    return "categorical_crossentropy", "task single_label: one softmax over exclusive classes"


def metric_names(task: str, num_classes: int | None = None) -> tuple[tuple[str, ...], str]:
    """The metrics each epoch reports for ``task`` (Keras history names) and why."""
    if task == "multi_label":
        return (("map", "exact_match"),
                "task multi_label: mean average precision over labels, exact-match ratio at 0.5")
    names = ("accuracy", "balanced_accuracy")
    if num_classes is not None and num_classes > 5:
        return (*names, "top5_accuracy"), f"task single_label, {num_classes} classes (top-5 above 5)"
    return names, "task single_label"


def make_loss(name: str, label_smoothing: float = 0.0):
    """The Keras loss named by :func:`loss_name` (label smoothing per label for binary cross-entropy:
    each target ``y`` becomes ``y * (1 - s) + s / 2``, Keras' own rule)."""
    import keras

    if name == "binary_crossentropy":
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def make_metrics(names: Sequence[str], num_classes: int) -> list:
    """The Keras metrics named by :func:`metric_names`, built for a head of ``num_classes`` outputs.

    ``map`` is Keras' area under each label's precision-recall curve (``AUC(curve="PR",
    multi_label=True)``), averaged over labels: the per-epoch estimate of mean average precision
    that picks the kept epoch; the final figures are scikit-learn's ``average_precision_score``.
    """
    import keras

    from restransfer.training.balanced_accuracy import BalancedAccuracy

    makers = {
        "accuracy": lambda: keras.metrics.CategoricalAccuracy(name="accuracy"),
        "balanced_accuracy": lambda: BalancedAccuracy(num_classes),
        "top5_accuracy": lambda: keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"),
        "map": lambda: keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_classes, name="map",
                                         num_thresholds=400),
        "exact_match": lambda: keras.metrics.MeanMetricWrapper(exact_match, name="exact_match"),
    }
    return [makers[name]() for name in names]


def exact_match(y_true, y_pred):
    """Per image, 1 when every label's probability is on its true side of 0.5 (soft targets: of 0.5 too)."""
    from keras import ops

    same = ops.equal(ops.greater(y_true, 0.5), ops.greater(y_pred, 0.5))
    return ops.cast(ops.all(same, axis=-1), "float32")


def labels_text(names: Sequence[str]) -> str:
    """A multi-label cell as the CSV writes it: the names joined by ``;`` (empty: no label)."""
    return ";".join(names)


__all__ = ["MULTI_LABEL_SOURCES", "TASKS", "head_activation", "labels_text", "loss_name", "make_loss",
           "make_metrics", "metric_names", "task_data_problem", "task_source_problem"]
