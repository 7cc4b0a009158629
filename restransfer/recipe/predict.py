"""Predict with a finished run: top-k labels and probabilities for image files.

Images are decoded and resized with ``restransfer.data.image_ops``, the same ops as the
validation pipeline and the exported serving graph, so predictions equal evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def predict(run_dir: str | Path, images: Sequence[str | Path], *, top_k: int = 5) -> list[dict]:
    """Top-k predictions of a run's ``model.keras`` for each image.

    Returns:
        One dict per image: ``{"image": path, "top": [(label, probability), ...]}``.

    Example:
        >>> predict("runs/quickstart/target", ["five.png"], top_k=3)[0]["top"][0]
        ('5', 0.97)
    """
    from restransfer.data.image_ops import read_images
    from restransfer.recipe.plan import run_plan
    from restransfer.runs import RunFolder

    folder = RunFolder(run_dir)
    model = folder.load_model()
    class_names = folder.class_names()
    plan = run_plan(folder)
    # Decoded and resized exactly as the run's validation images were.
    batch = read_images(images, plan.image_size, plan.data.resize)
    probabilities = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
    k = max(1, min(top_k, len(class_names)))
    results = []
    for path, row in zip(images, probabilities):
        order = np.argsort(-row)[:k]
        results.append({"image": str(path), "top": [(class_names[i], float(row[i])) for i in order]})
    return results
