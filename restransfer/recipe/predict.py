"""Predict with a finished run: top-k labels and probabilities for image files.

Images are decoded and resized with ``restransfer.data.image_ops``, the same ops as the
validation pipeline and the exported serving graph, so predictions equal evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def predict(run_dir: str | Path, images: Sequence[str | Path], *, top_k: int = 5, tta: bool = False,
            tta_crops: int | None = None) -> list[dict]:
    """Top-k predictions of a run's ``model.keras`` for each image.

    ``tta`` averages the probabilities over each image and its horizontal flip, ``tta_crops`` over
    that many crops too (`restransfer.data.tta`).

    Returns:
        One dict per image: ``{"image": path, "top": [(label, probability), ...]}``.

    Example:
        >>> predict("runs/quickstart/target", ["five.png"], top_k=3)[0]["top"][0]
        ('5', 0.97)
    """
    from restransfer.data.image_ops import read_images
    from restransfer.recipe.plan import run_plan
    from restransfer.recipe.tta import predict_batch_tta, views_of
    from restransfer.runs import RunFolder

    folder = RunFolder(run_dir)
    model = folder.load_model()
    class_names = folder.check_outputs(model)
    plan = run_plan(folder)
    # Decoded and resized exactly as the run's validation images were.
    batch = read_images(images, plan.image_size, plan.data.resize)
    probabilities = predict_batch_tta(model, batch, views_of(tta, tta_crops))
    k = max(1, min(top_k, len(class_names)))
    results = []
    for path, row in zip(images, probabilities):
        order = np.argsort(-row)[:k]
        results.append({"image": str(path), "top": [(class_names[i], float(row[i])) for i in order]})
    return results


def explain(run_dir: str | Path, images: Sequence[str | Path], *, out: str | Path | None = None) -> list[dict]:
    """Grad-CAM of a run's predicted class for each image, overlaid on it and saved as a PNG.

    Computed on the model's last stage (``conv5``, or ``conv4`` for CIFAR nets).

    Args:
        run_dir: the run folder.
        images: image files, decoded and resized as the run's validation images were.
        out: a ``.png`` file for one image, or a folder; default ``RUN/plots/gradcam/``.

    Returns:
        One dict per image: ``image``, ``explanation`` (the PNG), ``class``, ``probability``, ``stage``.
    """
    from restransfer.diagnostics.gradcam import explain_files
    from restransfer.recipe.plan import run_plan
    from restransfer.runs import RunFolder

    folder = RunFolder(run_dir)
    model = folder.load_model()
    plan = run_plan(folder)
    return explain_files(model, images, class_names=folder.class_names(),
                         out=out if out is not None else folder.plots / "gradcam",
                         image_size=plan.image_size, resize=plan.data.resize)
