"""Predict with a finished run: top-k labels and probabilities for image files.

Images are decoded and resized with ``restransfer.data.image_ops``, the same ops as the
validation pipeline and the exported serving graph, so predictions equal evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from restransfer.errors import DataError


def load_images(paths: Sequence[str | Path], image_size: Sequence[int]) -> np.ndarray:
    """Decode and resize image files into a float32 ``[N, h, w, 3]`` batch in 0..255."""
    import tensorflow as tf

    from restransfer.data.image_ops import decode_image, resize_for_eval

    batch = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"Image {path} does not exist.")
        try:
            image = decode_image(tf.constant(path.read_bytes()))
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
            reason = str(error).strip().splitlines()[0][:200]
            raise DataError(f"Image {path} cannot be decoded (JPEG, PNG, GIF, BMP or WebP expected): {reason}") from None
        batch.append(resize_for_eval(image, image_size).numpy())
    return np.stack(batch)


def predict(run_dir: str | Path, images: Sequence[str | Path], *, top_k: int = 5) -> list[dict]:
    """Top-k predictions of a run's ``model.keras`` for each image.

    Returns:
        One dict per image: ``{"image": path, "top": [(label, probability), ...]}``.

    Example:
        >>> predict("runs/quickstart/target", ["five.png"], top_k=3)[0]["top"][0]
        ('5', 0.97)
    """
    from restransfer.recipe.evaluate import load_run_model
    from restransfer.recipe.run import RunFolder

    folder = RunFolder(run_dir)
    model = load_run_model(folder)
    class_names = folder.class_names()
    size = tuple(model.input_shape[1:3])
    if None in size:
        size = tuple((folder.info() or {})["image_size"])
    probabilities = np.asarray(model.predict_on_batch(load_images(images, size)), dtype=np.float32)
    k = max(1, min(top_k, len(class_names)))
    results = []
    for path, row in zip(images, probabilities):
        order = np.argsort(-row)[:k]
        results.append({"image": str(path), "top": [(class_names[i], float(row[i])) for i in order]})
    return results
