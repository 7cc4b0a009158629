"""Frozen features computed once: split a model at a stage boundary, train the rest on cached features.

When a phase freezes a leading run of stages (``conv1``, ``conv2`` ... or everything but the
head) and nothing random runs before them, the frozen part computes the same function in every
epoch: BatchNorm layers that do not train run in inference mode, and augmentation (which
restransfer applies in the input pipeline, before the model) is off. Running that part once per
image and training the remaining layers on its stored output gives the same training steps for
a fraction of the work: a head-only epoch then costs one small matrix product per batch.

The split shares layers with the model (``keras.Model`` over intermediate tensors), so training
the suffix trains the model's own variables: nothing has to be copied back, and the model that
is saved afterwards is the whole network.

Model code (`split_model`, `cache_blockers`, `cacheable_stages`) is backend-agnostic; the
feature passes over ``tf.data`` datasets (`compute_features`, `feature_dataset`,
`cache_features`) import TensorFlow inside, as the data layer does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np

from restransfer.errors import ConfigError
from restransfer.models.stages import HEAD, INPUT, model_stages, stage_names
from restransfer.training.distribute import model_scope

if TYPE_CHECKING:
    import tensorflow as tf

# A recipe's ``feature_cache`` (see `cache_decision`).
FEATURE_CACHE_MODES = ("auto", True, False)
# Layers without weights that compute the same function in training and inference: the cut is
# moved past them, so a head-only phase caches pooled vectors instead of feature maps.
_PASS_THROUGH = (
    keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten,
    keras.layers.Activation, keras.layers.ReLU,
)
# Validation features are batched by bytes, not by the training batch: a cached validation pass
# computes no gradient and holds no image, so a head-only one is a single matrix product
# instead of one Keras step per training-sized batch (the result does not depend on the batch).
VAL_FEATURE_BATCH_BYTES = 32 * 2**20


@dataclass
class FeatureSplit:
    """A model cut in two at a stage boundary; ``suffix(prefix(x)) == model(x)``.

    Attributes:
        prefix: the frozen part, ``model.inputs -> features`` (run in inference mode).
        suffix: the rest, ``features -> model.outputs``; its layers are the model's own.
        boundary: the layer whose output is cached (``conv2_block3_out``, ``avg_pool``).
        stages: the stages inside the prefix (``["conv1", "conv2"]``).
    """

    prefix: keras.Model
    suffix: keras.Model
    boundary: str
    stages: list[str]

    @property
    def feature_shape(self) -> tuple:
        """Shape of one image's features, e.g. ``(8, 8, 64)`` or ``(64,)``."""
        return tuple(self.prefix.output.shape[1:])


def cacheable_stages(stages: Sequence[str], frozen: Iterable[str]) -> list[str]:
    """The leading run of frozen backbone stages, whose output can be cached.

    ``[]`` when the first stage trains, and when nothing after the run trains either
    (everything frozen, head included).

    Args:
        stages: the model's stages in order (``stage_names(model)``).
        frozen: the stages the phase freezes.

    Example:
        >>> cacheable_stages(["conv1", "conv2", "conv3", "conv4", "head"], ["conv1", "conv2", "conv4"])
        ['conv1', 'conv2']
    """
    frozen = set(frozen)
    backbone = [s for s in stages if s != HEAD]
    leading = list(itertools.takewhile(lambda stage: stage in frozen, backbone))
    if len(leading) == len(backbone) and HEAD in frozen:
        return []
    return leading


def recipe_blockers(cached: Sequence[str], *, augmented: bool = False, multi_worker: bool = False,
                    drop_path_rate: float = 0.0) -> list[str]:
    """Why the output of the ``cached`` stages cannot be computed once, as far as a recipe tells.

    Augmentation runs on the images before the model; ``multi_worker`` training splits image
    batches across processes; stochastic depth is random in every residual stage (its rate is
    0 only in the first block). `cache_blockers` checks the built model itself.
    """
    reasons = []
    if augmented:
        reasons.append("data.augment changes the images before the frozen stages")
    if multi_worker:
        reasons.append("multi_worker training splits batches of images across processes")
    if drop_path_rate and any(stage != cached[0] for stage in cached):
        reasons.append(f"model.drop_path_rate {drop_path_rate:g} drops residual branches of frozen stages at random")
    return reasons


def not_cacheable(what: str, reasons: Sequence[str]) -> str:
    """The refusal of ``feature_cache: true`` for ``what`` (the frozen stages), naming each cause."""
    return (f"feature_cache: true, but the output of {what} cannot be computed once: {'; '.join(reasons)}. "
            "Remove the cause or set feature_cache: auto.")


def cache_blockers(model: keras.Model, stages: Sequence[str]) -> list[str]:
    """Why the output of ``stages`` cannot be cached exactly; ``[]`` when it can.

    A cached prefix must compute the same function in every training step: no trainable
    weights (its BatchNorm layers then run in inference mode) and no random layer (dropout,
    stochastic depth, in-model augmentation) that is active in training.
    """
    by_stage = model_stages(model)
    reasons = []
    for stage in (INPUT, *stages):
        for layer in by_stage.get(stage, []):
            if layer.trainable and layer.trainable_weights:
                reasons.append(f"{layer.name} is trainable (stage {stage} must be frozen)")
            elif _is_random(layer):
                rate = getattr(layer, "rate", None)
                what = f"{type(layer).__name__}" + (f", rate {rate:g}" if rate is not None else "")
                reasons.append(f"{layer.name} ({what}) is random in training")
    return reasons


def _is_random(layer: keras.layers.Layer) -> bool:
    """A layer that draws random numbers in training: it owns a seed generator and a non-zero rate."""
    generators = [v for v in vars(layer).values() if isinstance(v, keras.random.SeedGenerator)]
    if not generators:
        return False
    rate = getattr(layer, "rate", None)
    return rate is None or float(rate) > 0.0


def split_model(model: keras.Model, stage: str) -> FeatureSplit:
    """Cut a functional model after ``stage`` into a prefix and a suffix that share its layers.

    The cut is the output of the stage's last layer; it moves on through following layers that
    have no weights and act the same in training and inference (global pooling, activations),
    so that for a head-only phase the cached features are pooled vectors.

    Args:
        model: a functional model with layers named by stage (``restransfer.create_model``).
        stage: the last stage of the prefix, e.g. ``"conv2"``; ``"input"`` cuts after the
            preprocessing layer.

    Returns:
        A :class:`FeatureSplit`.

    Raises:
        ConfigError: the model has no such stage, or another tensor of the prefix (a skip
            connection) crosses the boundary, so a single cached tensor cannot feed the rest.

    Example:
        >>> split = split_model(model, "conv2")
        >>> split.suffix(split.prefix(x)) == model(x)   # exactly, in inference mode
    """
    by_stage = model_stages(model)
    if stage not in by_stage or stage == HEAD:
        raise ConfigError(f"split_model: model '{model.name}' has no backbone stage '{stage}'; its stages "
                          f"are {[s for s in by_stage if s != HEAD]}.")
    order = list(model.layers)
    last = by_stage[stage][-1]
    cut = _output(last)
    for layer in order[order.index(last) + 1:]:
        # Only the next layer, only when it alone reads the cut (a Keras tensor is used by
        # identity; node 0 is the model's own graph).
        readers = [other for other in order if any(t is cut for t in _inputs(other))]
        if not (isinstance(layer, _PASS_THROUGH) and not layer.weights and readers == [layer]
                and len(_inputs(layer)) == 1):
            break
        cut, last = _output(layer), layer
    with model_scope(model):
        try:
            suffix = keras.Model(cut, model.outputs, name=f"{model.name}_after_{last.name}")
        except ValueError as error:
            raise ConfigError(
                f"split_model: model '{model.name}' cannot be cut after stage '{stage}': a later layer "
                f"also reads an earlier tensor ({error}). Cut at another stage boundary.") from None
        prefix = keras.Model(model.inputs, cut, name=f"{model.name}_to_{last.name}")
    names = [s for s in by_stage if s != INPUT]
    stages = names[: names.index(stage) + 1] if stage != INPUT else []
    return FeatureSplit(prefix=prefix, suffix=suffix, boundary=last.name, stages=stages)


def _output(layer: keras.layers.Layer):
    try:
        return layer.output
    except (AttributeError, ValueError) as error:
        raise ConfigError(f"split_model needs a functional model whose layers are called once; layer "
                          f"'{layer.name}' is not ({error}).") from None


def _inputs(layer: keras.layers.Layer) -> list:
    try:
        tensors = layer.input
    except (AttributeError, ValueError):  # an input layer
        return []
    return list(keras.tree.flatten(tensors))



def feature_bytes(split: FeatureSplit, count: int) -> int:
    """Bytes that ``count`` images' features take in memory."""
    dtype = np.dtype(keras.backend.standardize_dtype(split.prefix.output.dtype))
    return int(count * np.prod(split.feature_shape, dtype=np.int64) * dtype.itemsize)


def val_feature_batch(split: FeatureSplit, batch_size: int, count: int) -> int:
    """Validation features per batch: as many as `VAL_FEATURE_BATCH_BYTES` hold, at least ``batch_size``.

    Example:
        >>> val_feature_batch(split, 5, 200)   # pooled 64-float features: all 200 in one batch
        200
    """
    per_image = max(1, feature_bytes(split, 1))
    return max(1, min(count, max(batch_size, VAL_FEATURE_BATCH_BYTES // per_image)))


def compute_features(prefix: keras.Model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run ``prefix`` once over a dataset of ``(images, labels)`` batches, in inference mode.

    Args:
        prefix: ``FeatureSplit.prefix``.
        dataset: a finite ``tf.data.Dataset`` of ``(images, labels)`` batches, in the order
            the features are to be stored (not shuffled, not augmented).

    Returns:
        ``(features [N, ...], labels [N, ...])`` as NumPy arrays, in the dataset's order.
    """
    features, labels = [], []
    for images, batch_labels in dataset.as_numpy_iterator():
        features.append(np.asarray(prefix.predict_on_batch(images)))
        labels.append(np.asarray(batch_labels))
    if not features:
        raise ConfigError("compute_features: the dataset yielded no batches.")
    return np.concatenate(features), np.concatenate(labels)


def feature_dataset(features: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle: bool,
                    seed: int = 0, shuffle_buffer: int | None = None, drop_small_last: bool = False,
                    epoch: tf.Variable | None = None):
    """Batches ``(features, labels)`` from arrays, as the image pipeline batches images.

    With ``shuffle``, every epoch draws a new order of indices exactly as the in-memory image
    pipeline does (``restransfer.data.memory_store.stored_training_dataset``: the same ops
    and seed), so for the same seed the cached and uncached phases see the same batches.
    ``drop_small_last`` leaves out an epoch's last batch by the training pipeline's rule
    (``restransfer.data.pipeline.training_batches``). ``epoch``: the image pipeline's epoch
    counter (``DataBundle.epoch``), so that both take an epoch's order from its number
    (``restransfer.data.memory_store.shuffled_range``); None makes a counter of its own.
    """
    import tensorflow as tf

    from restransfer.data.memory_store import do_not_convert, epoch_counter, shuffled_range
    from restransfer.data.pipeline import training_batches

    count = len(features)
    with tf.device("/CPU:0"):  # tf.data functions run on the host
        values = tf.convert_to_tensor(features)
        targets = tf.convert_to_tensor(labels)
    order = tf.data.Dataset.range(count)
    if shuffle:
        buffer = max(1, min(shuffle_buffer or count, count))
        order = shuffled_range(count, buffer, seed, epoch_counter() if epoch is None else epoch)
    batches = training_batches(count, batch_size)[0] if drop_small_last else -(-count // batch_size)
    order = order.batch(batch_size).take(batches)
    ds = order.map(do_not_convert(lambda i: (tf.gather(values, i), tf.gather(targets, i))),
                   num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclass
class FeatureCache:
    """A split model with its training (and validation) features computed once.

    Attributes:
        split: the :class:`FeatureSplit`; train ``split.suffix`` on ``train``.
        train: shuffled feature batches, a new order every epoch (`feature_dataset`).
        val: validation feature batches in order (`val_feature_batch` per batch), or None.
        num_train: cached training images.
        num_val: cached validation images.
        seconds: time spent computing the features.
        nbytes: memory the features take.
    """

    split: FeatureSplit
    train: object
    val: object | None
    num_train: int
    num_val: int
    seconds: float
    nbytes: int

    def describe(self) -> str:
        """One log line: what was cached, how much and how long it took."""
        return (f"Feature cache: frozen {self.split.stages or 'input'} run once per image up to "
                f"'{self.split.boundary}' {list(self.split.feature_shape)}, {self.num_train} training"
                + (f" and {self.num_val} validation" if self.val is not None else "")
                + f" images, {self.nbytes / 2**20:.1f} MiB in {self.seconds:.1f} s; the phase trains the "
                f"{len(self.split.suffix.layers) - 1} layers after it.")


def cache_features(model: keras.Model, stage: str, train, val=None, *, batch_size: int, seed: int = 0,
                   shuffle_buffer: int | None = None, drop_small_last: bool = False,
                   epoch: tf.Variable | None = None) -> FeatureCache:
    """Split ``model`` after ``stage`` and compute the features of ``train`` (and ``val``) once.

    Args:
        model: the phase's model, frozen up to and including ``stage``.
        stage: the last frozen stage of the leading run (`cacheable_stages`).
        train: the training images as ``(images, labels)`` batches, unaugmented, in the same
            order on every pass (``DataBundle.train_unaugmented``).
        val: the validation batches, or None.
        batch_size: training batch size of the feature batches.
        seed: shuffle seed, the data pipeline's.
        shuffle_buffer: the data pipeline's shuffle window (None: whole set).
        drop_small_last: leave out a small last training batch, as the image pipeline does.
        epoch: the image pipeline's epoch counter (`feature_dataset`).

    Raises:
        ConfigError: the prefix is not exactly cacheable (`cache_blockers`).
    """
    split = split_model(model, stage)
    blockers = cache_blockers(model, split.stages)
    if blockers:
        raise ConfigError(f"The output of {split.stages} cannot be cached: " + "; ".join(blockers) + ".")
    start = time.perf_counter()
    features, labels = compute_features(split.prefix, train)
    val_data, num_val, nbytes = None, 0, features.nbytes
    if val is not None:
        val_features, val_labels = compute_features(split.prefix, val)
        val_data = feature_dataset(val_features, val_labels,
                                   val_feature_batch(split, batch_size, len(val_features)), shuffle=False)
        num_val, nbytes = len(val_features), nbytes + val_features.nbytes
    train_data = feature_dataset(features, labels, batch_size, shuffle=True, seed=seed,
                                 shuffle_buffer=shuffle_buffer, drop_small_last=drop_small_last, epoch=epoch)
    return FeatureCache(split=split, train=train_data, val=val_data, num_train=len(features), num_val=num_val,
                        seconds=time.perf_counter() - start, nbytes=nbytes)


def cache_decision(model: keras.Model, frozen: Iterable[str], *, mode: str | bool = "auto", augmented: bool = False,
                   multi_worker: bool = False, num_images: int = 0,
                   budget_bytes: float | None = None) -> tuple[str | None, str]:
    """Whether a phase trains on cached features: ``(stage to cut after, or None; why)``.

    ``mode``: ``"auto"`` caches when it is exact (a leading run of frozen stages, nothing random
    in it, no augmentation) and the features of ``num_images`` images fit in ``budget_bytes``;
    ``True`` caches whenever it is exact, and a phase that freezes leading stages but cannot be
    cached exactly is an error; ``False`` never caches.

    Raises:
        ConfigError: ``mode=True`` and the phase's frozen stages cannot be cached exactly.
    """
    if mode not in FEATURE_CACHE_MODES:
        raise ConfigError(f"feature_cache must be auto, true or false. Received feature_cache={mode!r}.")
    if mode is False:
        return None, "off (feature_cache: false)"
    stages = cacheable_stages(stage_names(model), frozen)
    if not stages:
        return None, "off: the phase freezes no leading stage"
    reasons = recipe_blockers(stages, augmented=augmented, multi_worker=multi_worker) + cache_blockers(model, stages)
    if reasons:
        if mode is True:
            raise ConfigError(not_cacheable(f"the frozen stages {stages}", reasons))
        return None, "off: " + "; ".join(reasons)
    if mode == "auto" and budget_bytes is not None and num_images:
        need = feature_bytes(split_model(model, stages[-1]), num_images)
        if need > budget_bytes:
            return None, (f"off: the features of {num_images} images take {need / 2**20:,.1f} MiB, more than the "
                          f"memory budget of {budget_bytes / 2**20:,.1f} MiB (feature_cache: true caches anyway)")
    return stages[-1], f"on, the frozen {stages} run once per image"
