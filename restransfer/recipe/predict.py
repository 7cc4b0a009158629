"""Predict with a finished run: top-k labels and probabilities for image files.

Images are decoded and resized with ``restransfer.data.image_ops``, the same ops as the
validation pipeline and the exported serving graph, so predictions equal evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RunPredictor:
    """A run's ``model.keras`` loaded once, with the run's input size and resize.

    What ``predict`` and the demo page (`restransfer.recipe.demo`) both call, so that a page
    shows exactly the probabilities ``restransfer predict`` prints.

    Example:
        >>> predictor = RunPredictor.load("runs/quickstart/target")
        >>> predictor.probabilities(predictor.read(["five.png"]))[0].argmax()
    """

    model: object
    class_names: list[str]
    image_size: tuple[int, int]
    resize: str
    thresholds: dict[str, float] | None = None  # a multi-label run's (thresholds.json)

    @classmethod
    def load(cls, run_dir: str | Path) -> RunPredictor:
        from restransfer.models.loading import load_run_model
        from restransfer.recipe.plan import run_plan
        from restransfer.runs import RunFolder

        folder = RunFolder(run_dir)
        model = load_run_model(folder)
        class_names = folder.check_outputs(model)
        plan = run_plan(folder)
        thresholds = folder.thresholds() if plan.task == "multi_label" else None
        return cls(model, class_names, tuple(plan.image_size), plan.data.resize, thresholds)

    def read(self, images: Sequence[str | Path]) -> np.ndarray:
        """Image files decoded, checked and resized exactly as the run's validation images were."""
        from restransfer.data.image_ops import read_images

        return read_images(images, self.image_size, self.resize)

    def probabilities(self, batch: np.ndarray, *, tta: bool = False, tta_crops: int | None = None) -> np.ndarray:
        """``[N, classes]`` probabilities of a batch from `read` (``tta`` as in `predict`)."""
        from restransfer.recipe.tta import predict_batch_tta, views_of

        return predict_batch_tta(self.model, batch, views_of(tta, tta_crops))

    def top(self, row: np.ndarray, top_k: int) -> list[tuple[str, float]]:
        """The ``top_k`` (label, probability) pairs of one row, most probable first."""
        k = max(1, min(top_k, len(self.class_names)))
        return [(self.class_names[i], float(row[i])) for i in np.argsort(-row, kind="stable")[:k]]


def predict(run_dir: str | Path, images: Sequence[str | Path], *, top_k: int = 5, tta: bool = False,
            tta_crops: int | None = None) -> list[dict]:
    """Top-k predictions of a run's ``model.keras`` for each image.

    ``tta`` averages the probabilities over each image and its horizontal flip, ``tta_crops`` over
    that many crops too (`restransfer.data.tta`).

    A multi-label run (``thresholds.json``) also gives each image's ``labels``: every label whose
    probability is at or above its threshold, most probable first.

    Returns:
        One dict per image: ``{"image": path, "top": [(label, probability), ...]}``, with
        ``"labels": [(label, probability), ...]`` for a multi-label run.

    Example:
        >>> predict("runs/quickstart/target", ["five.png"], top_k=3)[0]["top"][0]
        ('5', 0.97)
    """
    predictor = RunPredictor.load(run_dir)
    probabilities = predictor.probabilities(predictor.read(images), tta=tta, tta_crops=tta_crops)
    results = []
    for path, row in zip(images, probabilities):
        result = {"image": str(path), "top": predictor.top(row, top_k)}
        if predictor.thresholds is not None:
            result["labels"] = [(name, p) for name, p in predictor.top(row, len(row))
                                if p >= predictor.thresholds[name]]
        results.append(result)
    return results


def explain(run_dir: str | Path, images: Sequence[str | Path], *, out: str | Path | None = None,
            label: str | None = None) -> list[dict]:
    """Grad-CAM of a run's predicted class (or of ``label``) for each image, overlaid on it and saved as a PNG.

    Computed on the model's last stage (``conv5``, or ``conv4`` for CIFAR nets).

    Args:
        run_dir: the run folder.
        images: image files, decoded and resized as the run's validation images were.
        out: a ``.png`` file for one image, or a folder; default ``RUN/plots/gradcam/``.
        label: the class (a multi-label run's label) to explain in every image; default each
            image's most probable one.

    Returns:
        One dict per image: ``image``, ``explanation`` (the PNG), ``class``, ``probability``, ``stage``.
    """
    from restransfer.diagnostics.gradcam import explain_files
    from restransfer.models.loading import load_run_model
    from restransfer.recipe.plan import run_plan
    from restransfer.runs import RunFolder

    folder = RunFolder(run_dir)
    model = load_run_model(folder)
    plan = run_plan(folder)
    return explain_files(model, images, class_names=folder.check_outputs(model),
                         out=out if out is not None else folder.plots / "gradcam",
                         image_size=plan.image_size, resize=plan.data.resize, label=label)
