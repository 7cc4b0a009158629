"""NumPy arrays from the data pipeline's batches, for the diagnostics that take arrays."""

from __future__ import annotations

import numpy as np

from restransfer.training.linear_probe import class_ids


def dataset_arrays(dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and integer class ids of a dataset of ``(images, one-hot labels)`` batches.

    Args:
        dataset: e.g. ``load_data(...).val`` (a ``tf.data.Dataset``) or any iterable of batches.
        limit: stop after this many examples.

    Example:
        >>> data = load_data(source="digits", image_size=32, batch_size=64)
        >>> x_val, y_val = dataset_arrays(data.val)
    """
    images, labels, count = [], [], 0
    batches = dataset.as_numpy_iterator() if hasattr(dataset, "as_numpy_iterator") else dataset
    for x, y in batches:
        images.append(np.asarray(x, dtype="float32"))
        labels.append(class_ids(y))
        count += len(images[-1])
        if limit is not None and count >= limit:
            break
    if not images:
        return np.zeros((0,), "float32"), np.zeros((0,), np.int64)
    return np.concatenate(images)[:limit], np.concatenate(labels)[:limit]
