"""How a new classifier head starts: at random, at zero, or from a fitted linear probe (LP-FT).

- ``auto`` (the default):

  * ``probe`` when the backbone has pretrained weights, the first phase trains nothing but the
    head, the head has no hidden layer and the training set is small (at most
    ``AUTO_MAX_IMAGES``, as precise BN: the probe's features take one forward pass over the
    training images). A head trained alone from zero needs hundreds of optimizer steps to come
    near the probe on the quickstart's features; the probe is there at once
    (`benchmarks/head_convergence.py`; its results are on the docs' Benchmarks page).
  * ``random`` otherwise, as Keras and a hand-written script start a new ``Dense`` layer. A
    random backbone must get gradients from the first step, which a zero head passes none of
    (its kernel multiplies them); when the first phase fine-tunes a pretrained backbone too,
    the random head measured best on the quickstart's target as it was then (conv1-2 frozen,
    10 images per class, the same 5 source runs for each, ahead of the probe and of zeros at
    10x the rate): a head that already fits the few training images leaves the backbone
    almost no gradient to adapt with. ``restransfer bench transfer --freeze conv1-2 --init
    transfer --set head.init=...`` repeats the comparison.
  * ``zeros`` when the first phase trains only the head but the training set is large.
- ``zeros``: kernel and bias zero, as ViT and BiT fine-tune (Dosovitskiy et al.
  2021; Kolesnikov et al. 2020). Every class starts equally likely and the first gradients are
  the class means of the features; the layers before the head get none until it has grown.
- ``random``: Keras' Glorot-uniform kernel and a zero bias.
- ``probe``: a logistic regression (scikit-learn) fitted on the pooled features of the
  un-augmented training images under the backbone as it is, folded into the classifier; the
  phases then fine-tune from a head that already reads the features (LP-FT, Kumar et al. 2022,
  "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution").
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from restransfer.errors import ConfigError
from restransfer.training.linear_probe import class_ids, fit_sigmoid_probe, fit_softmax_probe

HEAD_INITS = ("auto", "zeros", "random", "probe")
# The new head's learning rate over the phase's: the classic fine-tuning rule for new layers
# (Caffe's lr_mult 10 on the replaced classifier).
HEAD_LR_MULTIPLIER = 10.0
CLASSIFIER = "predictions"


@dataclass
class ProbeInit:
    """The probe a head started from: its accuracy on the images it was fitted on, and their count."""

    train_accuracy: float
    images: int


def resolve_head_init(init: str, *, pretrained: bool, head_only: bool, hidden: int | None,
                      num_train: int | None) -> tuple[str | None, str]:
    """The init ``auto`` stands for here, and why; ``(None, rule)`` when it needs ``num_train`` and that is None.

    Args:
        init: the recipe's ``head.init``.
        pretrained: the backbone has pretrained weights.
        head_only: the first phase trains nothing but the head.
        hidden: the head's hidden units, if any.
        num_train: training images, None before the data is read.

    Example:
        >>> resolve_head_init("auto", pretrained=True, head_only=True, hidden=None, num_train=25)
        ('probe', 'auto: pretrained backbone, a head-only first phase, 25 training images <= 8192')
        >>> resolve_head_init("auto", pretrained=False, head_only=False, hidden=None, num_train=25)[0]
        'random'
    """
    from restransfer.training.precise_bn import AUTO_MAX_IMAGES

    if init != "auto":
        return init, init
    if not pretrained:
        return "random", "auto: random backbone"
    if not head_only:
        return "random", "auto: the first phase fine-tunes the backbone too"
    if hidden:
        return "random", "auto: the head has a hidden layer"
    if num_train is None:
        return None, f"auto: probe with at most {AUTO_MAX_IMAGES} training images, else zeros"
    if num_train > AUTO_MAX_IMAGES:
        return "zeros", f"auto: a head-only first phase, {num_train} training images > {AUTO_MAX_IMAGES}"
    return "probe", f"auto: pretrained backbone, a head-only first phase, {num_train} training images <= {AUTO_MAX_IMAGES}"


def head_lr_multiplier(init: str, requested: float | None) -> float:
    """The head's learning-rate factor: ``requested``, else 10 for a head that starts at zero, 1 otherwise.

    A zero head must grow before it passes gradients on, and a head-only phase from zero
    reached 0.554 validation accuracy at x1 and 0.661 at x10 on the quickstart's features (5
    seeds). A probe-initialised head already sits at a fitted solution (18 steps at x10 moved
    it from 0.819 to 0.808), and a random one is what a plain Keras script trains at x1.

    Example:
        >>> head_lr_multiplier("zeros", None), head_lr_multiplier("random", None), head_lr_multiplier("probe", 3)
        (10.0, 1.0, 3.0)
    """
    if requested is not None:
        return float(requested)
    return HEAD_LR_MULTIPLIER if init == "zeros" else 1.0


def zero_classifier(model: keras.Model) -> None:
    """Set the classifier layer's kernel and bias to zero (uniform predictions)."""
    for variable in _classifier(model).weights:
        variable.assign(np.zeros(variable.shape, keras.backend.standardize_dtype(variable.dtype)))


def init_head_from_probe(model: keras.Model, data, *, c: float = 1.0,
                         class_weight: np.ndarray | None = None, multi_label: bool = False) -> ProbeInit:
    """Start the classifier from a logistic regression on the pooled features of ``data``.

    Args:
        model: a restransfer classifier (``... -> avg_pool -> [dropout] -> predictions``).
        data: ``(images, labels)`` arrays, or an iterable of such batches (the training images
            without augmentation); labels one-hot or integer.
        c: inverse L2 strength of the logistic regression (scikit-learn's ``C``).
        class_weight: a weight per class (the run's class weights), or None.
        multi_label: the labels are 0/1 rows and the head ends in sigmoids: one logistic
            regression per label (`fit_sigmoid_probe`); ``train_accuracy`` is then the
            exact-match ratio at 0.5.

    Raises:
        ConfigError: the head has a hidden layer (the probe is linear), or a class has no image.
    """
    layer = _classifier(model)
    if any(existing.name == "head_hidden" for existing in model.layers):
        raise ConfigError("head.init: probe fits a linear classifier on the pooled features, so it needs a head "
                          "without a hidden layer; remove head.hidden or use head.init: zeros.")
    features_of = keras.Model(model.inputs, layer.input, name=f"{model.name}_head_features")
    batches = [data] if isinstance(data, tuple) else data
    features, labels = [], []
    for images, batch_labels in batches:
        features.append(np.asarray(features_of.predict_on_batch(images)))
        labels.append(np.asarray(batch_labels) if multi_label else class_ids(np.asarray(batch_labels)))
    features, labels = np.concatenate(features), np.concatenate(labels)
    if multi_label:
        kernel, bias = fit_sigmoid_probe(features, labels, c=c)
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        exact = np.all(((features @ kernel + bias) > 0) == (labels > 0.5), axis=-1)
        return ProbeInit(train_accuracy=float(np.mean(exact)), images=len(labels))
    num_classes = int(layer.units)
    kernel, bias = fit_softmax_probe(features, labels, num_classes, c=c, class_weight=class_weight)
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    accuracy = float(np.mean((features @ kernel + bias).argmax(-1) == labels))
    return ProbeInit(train_accuracy=accuracy, images=len(labels))


def _classifier(model: keras.Model) -> keras.layers.Dense:
    try:
        layer = model.get_layer(CLASSIFIER)
    except ValueError:
        raise ConfigError(f"Model '{model.name}' has no classifier layer '{CLASSIFIER}'; build it with "
                          "restransfer.create_model or restransfer.replace_head.") from None
    return layer
