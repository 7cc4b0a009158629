"""Classifier heads: build one on a feature map, or swap the head of a built model."""

from __future__ import annotations

import keras

from restransfer.errors import ConfigError
from restransfer.models.stages import HEAD, backbone_output, layer_stage


def classifier(features, num_classes: int, *, dropout: float = 0.0, hidden: int | None = None,
               activation: str | None = "softmax"):
    """Global average pooling, optional hidden layer and dropout, then a float32 classifier.

    Layer names start with ``head`` (``avg_pool`` and ``predictions`` keep keras.applications'
    names so its weights load): freezing treats them all as the head.
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer. Received num_classes={num_classes}.")
    x = features
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="head_hidden")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    # Logits and softmax stay float32 under mixed precision: float16 softmax overflows.
    x = keras.layers.Dense(num_classes, dtype="float32", name="predictions")(x)
    if activation:
        x = keras.layers.Activation(activation, dtype="float32", name="head_probabilities")(x)
    return x


def replace_head(model: keras.Model, num_classes: int, *, dropout: float = 0.0,
                 hidden: int | None = None, activation: str | None = "softmax") -> keras.Model:
    """Return a model that shares ``model``'s backbone layers and has a new, fresh head.

    Example:
        >>> base = create_model("resnet18", input_shape=(64, 64, 3))
        >>> model = replace_head(base, num_classes=5, dropout=0.2)
    """
    features = backbone_output(model)
    outputs = classifier(features, num_classes, dropout=dropout, hidden=hidden, activation=activation)
    return keras.Model(model.inputs, outputs, name=model.name)


__all__ = ["HEAD", "classifier", "replace_head", "layer_stage"]
