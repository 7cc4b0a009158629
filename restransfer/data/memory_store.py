"""Training images decoded once into one CPU tensor; every epoch is a new order of indices.

Why not ``ds.cache().shuffle(len(ds))``: a whole-set shuffle buffer holds every decoded image
before it yields the first one, so training cannot start until the whole first epoch is decoded
(decoding and the training step run one after the other instead of overlapping), and every
later epoch copies each image through the buffer one element at a time. Here:

- the first epoch streams: files are decoded in parallel in a random order of indices, each
  image is written to its slot in the store as it passes, and batches leave as soon as they
  are full;
- once every slot is filled, an epoch gathers whole batches from the store by index (one copy
  per batch, no per-image work).

An epoch that stops early (``take``, an interrupted ``fit``) leaves some slots empty; the next
epoch streams again and decodes only those. The order of epoch ``k`` depends only on the seed
and ``k``, so two bundles made with the same seed yield the same sequence.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

# Mixes the epoch number into the shuffle seed; any large odd constant works.
_EPOCH_STRIDE = 1_000_003


class ImageStore:
    """``count`` image slots ``[h, w, 3]`` of ``dtype`` with a filled flag each, on the CPU.

    Only sparse reads and writes touch ``images`` (`sparse_read`, `scatter_update`): a dense
    read of a variable that has had sparse access copies the whole tensor.
    """

    def __init__(self, count: int, image_size: tuple[int, int], dtype: tf.DType):
        height, width = image_size
        # On the CPU even when a GPU is visible: tf.data functions run on the host.
        with tf.device("/CPU:0"):
            self.images = tf.Variable(tf.zeros([count, height, width, 3], dtype),
                                      trainable=False, name="image_store")
            self.filled = tf.Variable(tf.zeros([count], tf.bool), trainable=False,
                                      name="image_store_filled")
            self.epochs = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name="image_store_epochs")

    @property
    def count(self) -> int:
        return int(self.filled.shape[0])

    def num_filled(self) -> int:
        return int(tf.math.count_nonzero(self.filled.read_value()))

    def put(self, index: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
        """Write ``image`` to slot ``index``, then mark it filled; returns ``image``."""
        written = self.images.scatter_update(tf.IndexedSlices(image[None], index[None]))
        with tf.control_dependencies([written]):
            marked = self.filled.scatter_update(
                tf.IndexedSlices(tf.constant([True]), index[None]))
        with tf.control_dependencies([marked]):
            return tf.identity(image)


def stored_training_dataset(store: ImageStore, labels: np.ndarray,
                            load: Callable[[tf.Tensor], tf.Tensor], batch_size: int, *,
                            seed: int = 0, shuffle_buffer: int | None = None,
                            count_in: Callable | None = None,
                            count_out: Callable | None = None,
                            drop_errors: bool = False) -> tf.data.Dataset:
    """Batches ``(images [B, h, w, 3] in the store's dtype, int64 labels [B])``, one epoch.

    Args:
        store: the slots to fill and read.
        labels: ``int64 [count]`` label of each slot.
        load: ``index -> image [h, w, 3]`` in the store's dtype (read, decode and resize).
        batch_size: images per batch.
        seed: the shuffle seed; the order of each epoch is a function of it and the epoch.
        shuffle_buffer: shuffle window over the indices; ``None`` permutes the whole set.
        count_in, count_out: ``(index) -> index`` maps run before and after the decode step
            of a streaming epoch (the drop counter of `load_data`).
        drop_errors: drop images whose ``load`` fails (files changed after the check).
    """
    count = store.count
    buffer = max(1, min(shuffle_buffer or count, count))
    labels = tf.constant(np.asarray(labels, np.int64))

    def fetch(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.cond(store.filled.sparse_read(index),
                        lambda: store.images.sparse_read(index),
                        lambda: store.put(index, load(index)))
        return image, tf.gather(labels, index)

    def gather(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return store.images.sparse_read(indices), tf.gather(labels, indices)

    def epoch(_) -> tf.data.Dataset:
        number = store.epochs.assign_add(1)
        order = tf.data.Dataset.range(count).shuffle(
            buffer, seed=seed * _EPOCH_STRIDE + number, reshuffle_each_iteration=False)

        def from_store() -> tf.data.Dataset:
            return order.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)

        def streaming() -> tf.data.Dataset:
            ds = order.map(count_in) if count_in is not None else order
            ds = ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE)
            if drop_errors:
                ds = ds.ignore_errors(log_warning=True)
            if count_out is not None:
                ds = ds.map(count_out)
            return ds.batch(batch_size)

        return tf.cond(tf.reduce_all(store.filled.read_value()), from_store, streaming)

    return tf.data.Dataset.range(1).flat_map(epoch)
