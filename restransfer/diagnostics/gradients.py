"""Gradient flow: how large the loss gradient is at each layer, block or stage of a network.

The claim under test: in a deep *plain* network the gradient reaching the early layers
shrinks (or grows) with depth, while shortcuts carry it back unchanged. Gradients need a
backend's autodiff, so this module has one small path per backend (TensorFlow's GradientTape,
JAX's ``jax.grad`` over Keras' ``stateless_call``), chosen by ``keras.backend.backend()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import keras
import numpy as np

from restransfer.errors import ConfigError, RestransferError
from restransfer.models.stages import layer_stage

LEVELS = ("layer", "block", "stage")
_BLOCK = re.compile(r"^(conv\d+_block\d+)_")


def group_name(layer_name: str, level: str) -> str:
    """The group a layer's gradient is summed into: itself, its block, or its stage.

    Example:
        >>> group_name("conv3_block2_1_conv", "block")
        'conv3_block2'
    """
    if level == "layer":
        return layer_name
    if level == "block":
        match = _BLOCK.match(layer_name)
        if match:
            return match.group(1)
    return layer_stage(layer_name)


def _default_loss(labels: np.ndarray) -> Callable:
    # One-hot labels (the data pipeline's format) or integer class ids.
    if labels.ndim >= 2 and labels.shape[-1] > 1:
        return keras.losses.CategoricalCrossentropy()
    return keras.losses.SparseCategoricalCrossentropy()


def _tensorflow_gradients(model, images, labels, loss_fn, training):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = keras.ops.mean(loss_fn(labels, model(images, training=training)))
    return [np.asarray(g) if g is not None else None for g in tape.gradient(value, model.trainable_weights)]


def _jax_gradients(model, images, labels, loss_fn, training):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_of(weights):
        outputs, _ = model.stateless_call(weights, non_trainable, images, training=training)
        # Loss functions given by name return per-example values; Loss objects a mean.
        return keras.ops.mean(loss_fn(labels, outputs))

    return [np.asarray(g) for g in jax.grad(loss_of)(trainable)]


_BACKENDS = {"tensorflow": _tensorflow_gradients, "jax": _jax_gradients}


def gradient_norms(model: keras.Model, images, labels, *, level: str = "layer",
                   loss: str | Callable | None = None, training: bool = True) -> dict[str, float]:
    """L2 norm of the loss gradient with respect to the trainable weights of each group.

    A group's norm is ``sqrt(sum of squared gradient entries)`` over all trainable weights of
    its layers (kernels, biases, normalisation scales and offsets).

    Args:
        model: any Keras model; restransfer models group by their systematic layer names.
        images: one batch of inputs, e.g. float32 ``[B, h, w, 3]`` in 0..255.
        labels: one-hot ``[B, classes]`` or integer ``[B]`` labels for ``images``.
        level: ``"layer"``, ``"block"`` (``conv3_block2``; stems and heads by stage) or ``"stage"``.
        loss: a Keras loss (name or callable); cross-entropy matching ``labels`` by default.
        training: run the forward pass in training mode (BatchNorm uses batch statistics).

    Returns:
        ``{group: norm}`` in network order, input side first.

    Example:
        >>> model = create_model("plain_cifar_resnet56")
        >>> norms = gradient_norms(model, images, labels, level="stage")
        >>> norms["conv1"] < norms["conv4"]   # vanishing towards the input
        True
    """
    if level not in LEVELS:
        raise ConfigError(f"level must be one of {list(LEVELS)}. Received level={level!r}.")
    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        raise RestransferError(
            f"gradient_norms supports the {sorted(_BACKENDS)} backends; Keras runs on '{backend}'. "
            "Set KERAS_BACKEND=tensorflow or jax before importing keras."
        )
    if not model.trainable_weights:
        raise ConfigError(f"Model '{model.name}' has no trainable weights (all stages frozen?).")
    images = np.asarray(images, dtype="float32")
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise ConfigError(f"images and labels differ in length: {len(images)} images, {len(labels)} labels.")
    loss_fn = keras.losses.get(loss) if loss is not None else _default_loss(labels)
    grads = _BACKENDS[backend](model, images, labels.astype("float32"), loss_fn, training)

    owner = {id(w): layer.name for layer in model.layers for w in layer.trainable_weights}
    squares: dict[str, float] = {}
    for weight, grad in zip(model.trainable_weights, grads):
        group = group_name(owner.get(id(weight), weight.path.split("/")[0]), level)
        value = 0.0 if grad is None else float(np.sum(np.square(grad, dtype=np.float64)))
        squares[group] = squares.get(group, 0.0) + value
    return {group: float(np.sqrt(total)) for group, total in squares.items()}


def gradient_flow(models: dict[str, keras.Model], images, labels, *, level: str = "block",
                  loss: str | Callable | None = None) -> dict[str, dict[str, float]]:
    """``gradient_norms`` of several models on the same batch: ``{label: {group: norm}}``.

    Example:
        >>> flow = gradient_flow({"plain-56": create_model("plain_cifar_resnet56"),
        ...                       "residual-56": create_model("cifar_resnet56")}, images, labels)
        >>> plot_gradient_flow(flow)
    """
    return {label: gradient_norms(model, images, labels, level=level, loss=loss)
            for label, model in models.items()}
