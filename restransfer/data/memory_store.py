"""Training images decoded once into one CPU tensor; every epoch is a new order of indices.

Why not ``ds.cache().shuffle(len(ds))``: a whole-set shuffle buffer holds every decoded image
before it yields the first one, so training cannot start until the whole first epoch is decoded
(decoding and the training step run one after the other instead of overlapping), and every
later epoch copies each image through the buffer one element at a time. Here:

- while some slot is empty, an epoch streams: indices in a new order -> read, decode, resize in
  parallel -> batch -> write the batch to its slots -> train; batches leave as soon as their
  images are decoded;
- once every slot is filled, an epoch only gathers: indices in a new order -> batch -> one
  gather per batch, no per-image work.

An epoch that stops early (``take``, an interrupted ``fit``) leaves slots empty, so the next
epoch streams (decodes) again; the store is complete after the first full epoch. On a dataset's
first run the check fills the store (`fill_store`) while it decodes every file anyway, and the
first epoch already only gathers.

Each epoch's order is a function of the seed and the epoch's number only (`shuffled_per_epoch`),
not of how many epochs this process has run: a run resumed at epoch ``k`` in a new process sees
the order the uninterrupted run saw (tf.data's ``reshuffle_each_iteration`` would restart from
the first epoch's order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

# For every tf.data function of the data layer: none has Python control flow on tensors, and
# AutoGraph's conversion of each one only costs start-up time.
do_not_convert = tf.autograph.experimental.do_not_convert


class ImageStore:
    """``count`` image slots ``[h, w, 3]`` of ``dtype`` with a filled flag each, on the CPU.

    Only sparse reads and writes touch ``images`` (`sparse_read`, `scatter_update`): a dense
    read of a variable that has had sparse access copies the whole tensor.
    """

    def __init__(self, count: int, image_size: tuple[int, int], dtype: tf.DType):
        height, width = image_size
        # On the CPU even when a GPU is visible: tf.data functions run on the host.
        with tf.device("/CPU:0"):
            # Uninitialised: zero-filling would write every page once more before the first
            # epoch writes it; `filled` guards every read.
            empty = tf.raw_ops.Empty(shape=[count, height, width, 3], dtype=dtype, init=False)
            self.images = tf.Variable(empty, trainable=False, name="image_store")
            self.filled = tf.Variable(tf.zeros([count], tf.bool), trainable=False,
                                      name="image_store_filled")

    @property
    def count(self) -> int:
        return int(self.filled.shape[0])

    def num_filled(self) -> int:
        return int(tf.math.count_nonzero(self.filled.read_value()))

    def put(self, indices: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
        """Write ``images [B, h, w, 3]`` to slots ``indices [B]``, mark them filled; returns
        ``images``."""
        written = self.images.scatter_update(tf.IndexedSlices(images, indices))
        with tf.control_dependencies([written]):
            marked = self.filled.scatter_update(
                tf.IndexedSlices(tf.ones_like(indices, tf.bool), indices))
        with tf.control_dependencies([marked]):
            return tf.identity(images)


def epoch_counter() -> tf.Variable:
    """The epoch number a training dataset draws its next order for (`shuffled_per_epoch`).

    Each pass reads and advances it; assign the epoch's number before a pass (the engine does, at
    each epoch's start) to get that epoch's order whatever ran before in this process.
    """
    with tf.device("/CPU:0"):  # read and advanced inside tf.data functions, which run on the host
        return tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")


def shuffled_per_epoch(ds: tf.data.Dataset, buffer: int, seed: int,
                       epoch: tf.Variable | int) -> tf.data.Dataset:
    """``ds`` shuffled in an order decided by ``(seed, epoch)`` alone, in any process.

    Consecutive blocks of ``buffer`` elements are each permuted (stateless random ops keyed by
    the seed, the epoch and the block): a ``buffer`` of at least ``len(ds)`` permutes the whole
    set, a smaller one bounds memory as a shuffle buffer of that size does. (``Dataset.shuffle``
    cannot take a per-pass seed, and with ``reshuffle_each_iteration`` a new process restarts
    from the first pass's order.)

    Args:
        ds: the elements, in a fixed order; a block is batched, so they share one shape.
        buffer: elements shuffled together.
        seed: the run's seed.
        epoch: an `epoch_counter` (each pass takes its number and advances it: a new order
            every pass), or an int (every pass the same order).
    """
    seed_pair = tf.constant([seed, 0], tf.int64)

    @do_not_convert
    def one_pass(_: tf.Tensor) -> tf.data.Dataset:
        number = epoch.assign_add(1) - 1 if isinstance(epoch, tf.Variable) else tf.constant(epoch, tf.int64)
        pass_seed = tf.random.experimental.stateless_fold_in(seed_pair, number)

        @do_not_convert
        def permuted(index: tf.Tensor, block) -> tf.data.Dataset:
            size = tf.shape(tf.nest.flatten(block)[0])[0]
            order = tf.random.experimental.stateless_shuffle(
                tf.range(size), tf.random.experimental.stateless_fold_in(pass_seed, index))
            # One element at a time out of the block: no second copy of a block of images.
            return tf.data.Dataset.from_tensor_slices(order).map(
                do_not_convert(lambda i: tf.nest.map_structure(lambda t: t[i], block)))

        return ds.batch(buffer).enumerate().flat_map(permuted)

    return tf.data.Dataset.range(1).flat_map(one_pass)


_UNROLLED_BLOCKS = 16


def shuffled_range(count: int, buffer: int, seed: int, epoch: tf.Variable | int) -> tf.data.Dataset:
    """``0 .. count - 1`` (int64) in the order `shuffled_per_epoch` gives ``Dataset.range(count)``.

    The same permutations, drawn in one pass function instead of a dataset per block: every
    pass of a nested dataset instantiates its functions again, which cost a small epoch (a few
    batches of images in the store, or of cached features) more than its training steps.
    """
    seed_pair = tf.constant([seed, 0], tf.int64)
    full, rest = divmod(count, buffer)

    @do_not_convert
    def one_pass(_: tf.Tensor) -> tf.data.Dataset:
        number = epoch.assign_add(1) - 1 if isinstance(epoch, tf.Variable) else tf.constant(epoch, tf.int64)
        pass_seed = tf.random.experimental.stateless_fold_in(seed_pair, number)

        def block(index: tf.Tensor, size: int) -> tf.Tensor:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(size), tf.random.experimental.stateless_fold_in(pass_seed, index))
            return tf.cast(order, tf.int64) + index * buffer

        if full <= _UNROLLED_BLOCKS:  # a loop costs more than a few blocks written out
            parts = [block(tf.constant(i, tf.int64), buffer) for i in range(full)]
        else:
            parts = [tf.reshape(tf.map_fn(lambda i: block(i, buffer), tf.range(full, dtype=tf.int64),
                                          fn_output_signature=tf.int64), [-1])]
        if rest:
            parts.append(block(tf.constant(full, tf.int64), rest))
        return tf.data.Dataset.from_tensor_slices(tf.concat(parts, 0))

    return tf.data.Dataset.range(1).flat_map(one_pass)


def fill_store(store: ImageStore, indices: Sequence[int],
               load: Callable[[tf.Tensor], tf.Tensor], batch_size: int = 64) -> list[int]:
    """Load slots ``indices`` into ``store`` (in parallel, any order); return those that failed.

    Args:
        store: the slots to fill.
        indices: which slots to load.
        load: ``index -> image [h, w, 3]`` in the store's dtype; an image whose ``load`` raises
            is left out and its index returned.
        batch_size: images written per scatter.
    """
    if not len(indices):
        return []
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64))
    ds = ds.map(do_not_convert(lambda index: (index, load(index))),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors().batch(batch_size)
    ds = ds.map(do_not_convert(lambda index, images: _after(store.put(index, images), index)))
    loaded = np.concatenate([index for index in ds.as_numpy_iterator()] or [np.zeros(0, int)])
    return sorted(set(int(i) for i in indices) - set(loaded.tolist()))


def stored_training_dataset(store: ImageStore, labels: np.ndarray,
                            load: Callable[[tf.Tensor], tf.Tensor], batch_size: int, *,
                            seed: int = 0, shuffle_buffer: int | None = None,
                            epoch: tf.Variable | int | None = None,
                            counters: tuple[tf.Variable, tf.Variable] | None = None,
                            drop_errors: bool = False, min_batch: int = 1) -> tf.data.Dataset:
    """Batches ``(images [B, h, w, 3] in the store's dtype, int64 labels [B])``, one epoch.

    Args:
        store: the slots to fill and read.
        labels: ``int64 [count]`` label of each slot.
        load: ``index -> image [h, w, 3]`` in the store's dtype (read, decode and resize).
        batch_size: images per batch.
        seed: the shuffle seed (reshuffled every epoch, the same sequence for the same seed).
        shuffle_buffer: shuffle window over the indices; ``None`` permutes the whole set.
        epoch: which epoch's order each pass takes (`shuffled_per_epoch`): an `epoch_counter`,
            or an int for the same order every pass; ``None`` makes a counter of its own.
        counters: ``(entered, left)`` int64 variables, incremented before and after each
            ``load``; their difference is the number of images dropped (`load_data`).
        drop_errors: drop images whose ``load`` fails (files changed after the check).
        min_batch: leave out a batch of fewer images (the epoch's last; `training_batches`).
            A streaming epoch still decodes and stores its images: the store fills in one epoch.
    """
    count = store.count
    buffer = max(1, min(shuffle_buffer or count, count))
    labels = tf.constant(np.asarray(labels, np.int64))
    order = shuffled_range(count, buffer, seed, epoch_counter() if epoch is None else epoch)

    @do_not_convert
    def decode(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if counters is None:
            return load(index), index
        with tf.control_dependencies([counters[0].assign_add(1)]):
            image = load(index)
        with tf.control_dependencies([image]):
            left = counters[1].assign_add(1)
        with tf.control_dependencies([left]):
            return tf.identity(image), index

    @do_not_convert
    def write(images: tf.Tensor, indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return store.put(indices, images), tf.gather(labels, indices)

    @do_not_convert
    def gather(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return store.images.sparse_read(indices), tf.gather(labels, indices)

    streaming = order.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if drop_errors:
        streaming = streaming.ignore_errors(log_warning=True)
    streaming = streaming.batch(batch_size).map(write, num_parallel_calls=tf.data.AUTOTUNE)
    from_store = order.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if min_batch > 1:
        # After `write`, so that the left-out images are stored all the same.
        streaming, from_store = (ds.filter(_at_least(min_batch)) for ds in (streaming, from_store))
    # The choice is made once per epoch, when the epoch's iterator starts.
    return tf.data.Dataset.range(1).flat_map(do_not_convert(
        lambda _: tf.cond(tf.reduce_all(store.filled.read_value()),
                          lambda: from_store, lambda: streaming)))


def _at_least(min_batch: int) -> Callable:
    return do_not_convert(lambda images, labels: tf.shape(labels)[0] >= min_batch)


def _after(done: tf.Tensor, value: tf.Tensor) -> tf.Tensor:
    with tf.control_dependencies([done]):
        return tf.identity(value)

