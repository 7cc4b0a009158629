"""Normalisation versus batch size: BatchNorm, GroupNorm, LayerNorm and InstanceNorm.

The claim under test (Wu and He, "Group Normalization", 2018): BatchNorm's accuracy falls as
the batch shrinks, because its batch statistics get noisy and its moving averages drift from
them, while GroupNorm, LayerNorm and InstanceNorm normalise each example on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from restransfer.errors import ConfigError
from restransfer.models.blocks import NORMS
from restransfer.models.registry import create_model
from restransfer.models.resnet import build_resnet
from restransfer.models.specs import ResNetSpec
from restransfer.training.linear_probe import class_ids

BATCH_SIZES = (2, 4, 8, 16, 32, 64)
NORM_CHOICES = ("batch", "group", "layer", "instance")


@dataclass
class NormResult:
    """Validation accuracy after a short training run with one normalisation and batch size."""

    norm: str
    batch_size: int
    accuracy: float
    train_loss: float
    learning_rate: float
    steps: int


def _builder(model: str | ResNetSpec, num_classes: int, input_shape, options: dict) -> Callable[[str], keras.Model]:
    def build(norm: str) -> keras.Model:
        kwargs = dict(num_classes=num_classes, input_shape=input_shape, norm=norm, **options)
        if isinstance(model, ResNetSpec):
            return build_resnet(model, name=f"norm_{norm}", **kwargs)
        return create_model(model, **kwargs)

    return build


def _reset(model: keras.Model, weights: list, learning_rate: float, bn_momentum: float | None) -> None:
    model.set_weights(weights)
    for variable in model.optimizer.variables:
        variable.assign(keras.ops.zeros_like(variable))
    model.optimizer.learning_rate = learning_rate
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)


def set_bn_momentum(model: keras.Model, momentum: float) -> None:
    """Set every BatchNormalization layer's moving-average momentum (as recipes' ``model.bn_momentum``)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def compare_norms(x_train, y_train, x_val, y_val, *, model: str | ResNetSpec = "cifar_resnet20",
                  norms: Sequence[str] = NORM_CHOICES, batch_sizes: Sequence[int] = BATCH_SIZES,
                  epochs: int = 2, base_lr: float = 0.05, reference_batch: int = 32,
                  bn_momentum: float | None = 0.9, seed: int = 0, model_options: dict | None = None,
                  on_result: Callable[[NormResult], None] | None = None) -> list[NormResult]:
    """Train one model per ``(norm, batch size)`` on the same data and report validation accuracy.

    Every run starts from the same initial weights (per norm), sees the same images for the
    same number of epochs, and uses SGD with momentum 0.9 at ``base_lr * batch / reference_batch``
    (the linear scaling rule of Goyal et al. 2017), so only the batch size differs. Each norm's
    model is compiled once and reset between batch sizes.

    Args:
        x_train, y_train, x_val, y_val: images (float32 0..255 ``[N, h, w, 3]``) and labels
            (one-hot or integer).
        model: a model name or a ``ResNetSpec`` (e.g. a narrow CIFAR ResNet for quick runs).
        norms: any of ``"batch"``, ``"group"``, ``"layer"``, ``"instance"``.
        batch_sizes: training batch sizes; evaluation always uses batches of 64.
        epochs: passes over ``x_train`` per run.
        base_lr: learning rate at ``reference_batch``.
        bn_momentum: BatchNorm moving-average momentum for these runs. Keras' default 0.99
            needs hundreds of steps to forget its initial statistics, so a short run at a
            large batch would measure that lag rather than batch-size sensitivity; 0.9 is
            PyTorch's default. ``None`` keeps the model's own.
        model_options: more ``create_model``/``build_resnet`` options (``preprocessing`` ...).
        on_result: called with each result as it finishes (progress in notebooks).

    Returns:
        One ``NormResult`` per ``(norm, batch size)``.
    """
    bad = [n for n in norms if n not in NORMS]
    if bad:
        raise ConfigError(f"Unknown norms {bad}; choose from {list(NORMS)}.")
    if any(b < 1 for b in batch_sizes):
        raise ConfigError(f"batch_sizes must be positive. Received {list(batch_sizes)}.")
    y_train, y_val = class_ids(y_train), class_ids(y_val)
    num_classes = int(max(y_train.max(), y_val.max()) + 1)
    x_train = np.asarray(x_train, dtype="float32")
    x_val = np.asarray(x_val, dtype="float32")
    build = _builder(model, num_classes, x_train.shape[1:], {"preprocessing": "tf", **(model_options or {})})

    results = []
    for norm in norms:
        keras.utils.set_random_seed(seed)
        net = build(norm)
        net.compile(keras.optimizers.SGD(base_lr, momentum=0.9), "sparse_categorical_crossentropy",
                    metrics=["accuracy"])
        net.optimizer.build(net.trainable_variables)
        initial = net.get_weights()
        for batch in batch_sizes:
            lr = base_lr * batch / reference_batch
            _reset(net, initial, lr, bn_momentum)
            keras.utils.set_random_seed(seed)
            history = net.fit(x_train, y_train, batch_size=batch, epochs=epochs, shuffle=True, verbose=0)
            _, accuracy = net.evaluate(x_val, y_val, batch_size=64, verbose=0)
            result = NormResult(norm=norm, batch_size=int(batch), accuracy=float(accuracy),
                                train_loss=float(history.history["loss"][-1]), learning_rate=lr,
                                steps=epochs * -(-len(x_train) // batch))
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results
