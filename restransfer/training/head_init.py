"""How a new classifier head starts: random (zero logits), or from a fitted linear probe (LP-FT).

A new head learns from fixed pooled features at first, and with a random Glorot kernel its
initial logits are as large as what a few dozen steps can change (measured on the quickstart:
`benchmarks/head_convergence.py`). ``random`` therefore starts the kernel at zero (the bias
is zero too): every class starts equally likely and the first gradients are the class means of
the features, no noise to undo. ``probe`` fits a logistic regression (scikit-learn) on the
pooled features of the un-augmented training images under the current (frozen) backbone and
starts the head from it; fine-tuning then moves features that a good head already reads
(LP-FT, Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features").
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from restransfer.errors import ConfigError

HEAD_INITS = ("random", "probe")
CLASSIFIER = "predictions"


@dataclass
class ProbeInit:
    """The probe a head started from: its accuracy on the images it was fitted on, and their count."""

    train_accuracy: float
    images: int


def zero_classifier(model: keras.Model) -> None:
    """Set the classifier layer's kernel and bias to zero (uniform predictions)."""
    for variable in _classifier(model).weights:
        variable.assign(np.zeros(variable.shape, keras.backend.standardize_dtype(variable.dtype)))


def init_head_from_probe(model: keras.Model, data, *, c: float = 1.0) -> ProbeInit:
    """Start the classifier from a logistic regression on the pooled features of ``data``.

    Args:
        model: a restransfer classifier (``... -> avg_pool -> [dropout] -> predictions``).
        data: ``(images, labels)`` arrays, or an iterable of such batches (the training images
            without augmentation); labels one-hot or integer.
        c: inverse L2 strength of the logistic regression (scikit-learn's ``C``).

    Raises:
        ConfigError: the head has a hidden layer (the probe is linear), or a class has no image.
    """
    from restransfer.diagnostics.probe import class_ids, fit_softmax_probe

    layer = _classifier(model)
    if any(existing.name == "head_hidden" for existing in model.layers):
        raise ConfigError("head.init: probe fits a linear classifier on the pooled features, so it needs a head "
                          "without a hidden layer; remove head.hidden or use head.init: random.")
    features_of = keras.Model(model.inputs, layer.input, name=f"{model.name}_head_features")
    batches = [data] if isinstance(data, tuple) else data
    features, labels = [], []
    for images, batch_labels in batches:
        features.append(np.asarray(features_of.predict_on_batch(images)))
        labels.append(class_ids(np.asarray(batch_labels)))
    features, labels = np.concatenate(features), np.concatenate(labels)
    num_classes = int(layer.units)
    kernel, bias = fit_softmax_probe(features, labels, num_classes, c=c)
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
