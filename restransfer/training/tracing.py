"""One trace of the training step: build what ``fit`` would otherwise create inside it.

Keras' TensorFlow trainer, without a ``tf.distribute`` strategy, builds the compiled metrics
and the optimizer's slots lazily, inside the first trace of the training step. A
``tf.function`` that creates variables on its first call is traced a second time (TensorFlow's
rule), so the first epoch pays for two traces, a large share of a small CIFAR ResNet's first
epoch on a CPU. Building them beforehand, eagerly, leaves one trace. With a strategy Keras
builds them itself, and JAX traces a pure function once either way.
"""

from __future__ import annotations

import keras


def build_before_fit(model: keras.Model) -> bool:
    """Create a compiled model's metric variables and optimizer slots now, not in ``fit``'s trace.

    One eager forward pass of a single blank image in inference mode (no state changes), then
    ``compute_loss``/``compute_metrics`` on it and ``reset_metrics``, then
    ``optimizer.build(trainable_variables)``. Does nothing off the TensorFlow backend, under a
    ``tf.distribute`` strategy (Keras builds symbolically there) or for an uncompiled model.

    Returns:
        Whether anything was built.

    Example:
        >>> model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        >>> build_before_fit(model)   # fit's first epoch now traces the step once
        True
    """
    if keras.backend.backend() != "tensorflow" or not model.compiled:
        return False
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return False
    shape = tuple(model.inputs[0].shape[1:])
    if any(size is None for size in shape) or len(model.inputs) != 1:
        return False
    image = keras.ops.zeros((1, *shape), dtype=model.inputs[0].dtype)
    predicted = model(image, training=False)
    target = keras.ops.zeros_like(keras.ops.cast(predicted, "float32"))
    model.compute_loss(image, target, predicted)
    model.compute_metrics(image, target, predicted, sample_weight=None)
    model.reset_metrics()
    model.optimizer.build(model.trainable_variables)
    return True
