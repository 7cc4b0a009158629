"""Precise BatchNorm: moving statistics recomputed exactly over a pass of the training data.

A BatchNorm layer's moving mean and variance are an exponential average of batch statistics
taken while the weights moved. After a short fine-tuning phase they still remember the source
task (after T steps at momentum m a share m**T of the start value is left: 0.99**24 = 0.79)
and lag the final weights, so the evaluated network is not the trained one. Precise BN (Wu &
Johnson 2021, "Rethinking 'Batch' in BatchNorm"; pycls and fvcore's ``update_bn_stats``) runs
the final weights over the training images once, BatchNorm in training mode as the weights were
trained, and sets each trainable BN layer's statistics to the exact population mean and
(biased) variance of its inputs over the whole pass, not an average.

Only trainable BN layers change: frozen ones run in inference mode (as during their phase), and
their statistics stay bit-identical. Dropout and stochastic depth are off for the pass: it
measures the network that is evaluated. Backend-agnostic (``keras.ops`` and ``predict``), so it
runs on JAX without TensorFlow and under a distribution strategy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from restransfer.errors import ConfigError
from restransfer.training.distribute import model_scope

# The recipe's top-level ``precise_bn``: "auto", true or false.
PRECISE_BN_CHOICES = ("auto", True, False)
# pycls's NUM_SAMPLES_PRECISE: enough images for the population statistics of ImageNet-scale
# training. ``auto`` recomputes when the whole training set fits in such a pass: then it is
# exact over every training image, costs at most one forward pass per phase (about a third of
# a training epoch), and the dataset is small enough that a phase has few optimizer steps,
# which is when the moving averages are stale. A larger set trains for hundreds of steps per
# epoch, and the pass (with ``true``) uses its first AUTO_MAX_IMAGES images.
AUTO_MAX_IMAGES = 8192


@dataclass
class PreciseBNResult:
    """What a precise-BN pass did.

    Attributes:
        layers: names of the BatchNorm layers whose statistics were recomputed.
        images: images in the pass.
        batches: batches in the pass.
    """

    layers: list[str]
    images: int
    batches: int


def precise_bn_enabled(mode: str | bool, num_train: int) -> tuple[bool, str]:
    """Whether the recipe's ``precise_bn`` recomputes statistics for ``num_train`` images, and why.

    Example:
        >>> precise_bn_enabled("auto", 50)
        (True, 'auto: 50 training images <= 8192')
    """
    if mode not in PRECISE_BN_CHOICES:
        raise ConfigError(f"precise_bn must be auto, true or false. Received precise_bn={mode!r}.")
    if mode == "auto":
        on = num_train <= AUTO_MAX_IMAGES
        return on, f"auto: {num_train} training images {'<=' if on else '>'} {AUTO_MAX_IMAGES}"
    return bool(mode), "on" if mode else "off"


def precise_bn_steps(num_train: int, batch_size: int) -> int:
    """Batches of the pass: every training image, at most AUTO_MAX_IMAGES of them."""
    return max(1, -(-min(num_train, AUTO_MAX_IMAGES) // batch_size))


def trainable_batch_norms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The model's BatchNormalization layers that train (``trainable`` and not frozen), in order."""
    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def precise_bn(model: keras.Model, data, *, batch_size: int | None = None, steps: int | None = None,
               layers: Sequence[keras.layers.BatchNormalization] | None = None) -> PreciseBNResult:
    """Set the moving statistics of ``model``'s trainable BatchNorm layers from one pass over ``data``.

    Args:
        model: a functional Keras model (restransfer's models are); its weights do not change.
        data: what ``model.predict`` takes: a dataset of ``x`` or ``(x, y)`` batches (the
            training images without augmentation), or an array of images.
        batch_size: images per batch when ``data`` is an array (``predict``'s default, 32, else).
        steps: stop after this many batches (default: the whole of ``data``).
        layers: which BatchNorm layers to recompute (default: `trainable_batch_norms`).

    Returns:
        A :class:`PreciseBNResult`; with no trainable BatchNorm layer nothing runs.

    Raises:
        ConfigError: the model is not functional, or a layer is not one of its BatchNorm layers.

    Example:
        >>> precise_bn(model, train_without_augmentation)
        PreciseBNResult(layers=['conv3_block1_1_bn', ...], images=50, batches=4)
    """
    targets = list(trainable_batch_norms(model) if layers is None else layers)
    if not targets:
        return PreciseBNResult(layers=[], images=0, batches=0)
    _check_targets(model, targets)
    axes = [_reduction_axes(layer) for layer in targets]
    with model_scope(model):
        probe = keras.Model(model.inputs, [layer.input for layer in targets], name=f"{model.name}_bn_inputs")
        moments = _BatchMoments(probe, axes, name="precise_bn_moments")
    with _without_noise(model):
        outputs = moments.predict(data, batch_size=batch_size, steps=steps, verbose=0)
    images = np.asarray(outputs[0], np.float64)
    for layer, (count, total, squares) in zip(targets, _triples(outputs[1:])):
        mean, variance = _combine(np.asarray(count, np.float64), np.asarray(total, np.float64),
                                  np.asarray(squares, np.float64))
        layer.moving_mean.assign(mean.astype(keras.backend.standardize_dtype(layer.moving_mean.dtype)))
        layer.moving_variance.assign(variance.astype(keras.backend.standardize_dtype(layer.moving_variance.dtype)))
    return PreciseBNResult(layers=[layer.name for layer in targets], images=int(images.sum()),
                           batches=int(np.count_nonzero(images)))


class _BatchMoments(keras.Model):
    """Per batch: images, and for each BN layer's input the count, sum and squared deviations per channel.

    Sums about the batch's own mean (combined exactly with Chan et al.'s formula afterwards)
    keep float32 accurate where a raw sum of squares would cancel. Every output has a leading
    axis of 1 so that ``predict`` concatenates one row per batch (per replica under
    ``tf.distribute``, where an empty replica batch gives a row of zeros).
    """

    def __init__(self, probe: keras.Model, axes: list[tuple[int, ...]], **kwargs):
        super().__init__(**kwargs)
        self.probe = probe
        self.axes = axes

    def call(self, images):
        inputs = self.probe(images, training=True)
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        first = ops.cast(ops.shape(inputs[0])[0], "float32")
        rows = [ops.reshape(first, (1,))]
        for tensor, axes in zip(inputs, self.axes):
            tensor = ops.cast(tensor, "float32")
            channels = [tensor.shape[a] for a in range(len(tensor.shape)) if a not in axes]
            count = ops.cast(ops.size(tensor), "float32") / float(np.prod(channels))
            total = ops.sum(tensor, axis=axes, keepdims=True)
            mean = total / ops.maximum(count, 1.0)
            squares = ops.sum(ops.square(tensor - mean), axis=axes)
            rows += [ops.reshape(count, (1,)), ops.reshape(total, (1, -1)), ops.expand_dims(squares, 0)]
        return rows


def _combine(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and biased variance of the union of batches, from per-batch (n, sum, M2)."""
    keep = count > 0
    count, total, squares = count[keep], total[keep], squares[keep]
    n = count.sum()
    mean = total.sum(axis=0) / n
    batch_means = total / count[:, None]
    m2 = squares.sum(axis=0) + (count[:, None] * np.square(batch_means - mean)).sum(axis=0)
    return mean, m2 / n


def _triples(values: list) -> Iterator[tuple]:
    for start in range(0, len(values), 3):
        yield values[start], values[start + 1], values[start + 2]


def _reduction_axes(layer: keras.layers.BatchNormalization) -> tuple[int, ...]:
    rank = len(layer.input.shape)
    channel = layer.axis % rank
    return tuple(a for a in range(rank) if a != channel)


def _check_targets(model: keras.Model, targets: list) -> None:
    own = {id(layer) for layer in model.layers}
    for layer in targets:
        if not isinstance(layer, keras.layers.BatchNormalization) or id(layer) not in own:
            raise ConfigError(f"precise_bn: '{getattr(layer, 'name', layer)}' is not a BatchNormalization "
                              f"layer of model '{model.name}'. Pass layers from trainable_batch_norms(model).")
    try:
        model.inputs  # noqa: B018 - only functional models have a graph to take BN inputs from
        [layer.input for layer in targets]  # noqa: B018
    except (AttributeError, ValueError) as error:
        raise ConfigError(f"precise_bn needs a functional Keras model (keras.Model(inputs, outputs)); "
                          f"'{model.name}' is not one ({error}). Build it with restransfer.create_model.") from None


@contextlib.contextmanager
def _without_noise(model: keras.Model):
    """Dropout and stochastic depth off (``rate`` 0) while the pass is traced and run."""
    noisy = [layer for layer in model.layers if getattr(layer, "rate", 0.0) and hasattr(layer, "seed_generator")]
    rates = [layer.rate for layer in noisy]
    for layer in noisy:
        layer.rate = 0.0
    try:
        yield
    finally:
        for layer, rate in zip(noisy, rates):
            layer.rate = rate
