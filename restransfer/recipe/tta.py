"""Predictions averaged over test-time augmentation views (`restransfer.data.tta`).

The recipe's ``tta:`` applies them to the final evaluation of a run; ``evaluate --tta`` and
``predict --tta`` to a finished run's model. The identity view alone is plain prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def views_of(tta: bool | Mapping[str, Any] | Any | None, crops: int | None = None) -> list | None:
    """The views a ``tta`` setting asks for, or None for plain prediction.

    ``tta`` is ``True`` (a horizontal flip), ``False``/``None``, a recipe's ``TtaConfig`` or a
    mapping ``{flip, crops}``; ``crops`` overrides the crop count.
    """
    from restransfer.data.tta import tta_views

    if tta is None or tta is False:
        if not crops:
            return None
        tta = {"flip": False}
    if tta is True:
        tta = {"flip": True}
    if not isinstance(tta, Mapping):
        tta = tta.model_dump()
    flip, count = bool(tta.get("flip", True)), int(tta.get("crops", 0) if crops is None else crops)
    if not flip and not count:
        return None
    return tta_views(flip=flip, crops=count)


def describe_views(views: Sequence | None) -> str:
    return "off" if not views else f"mean of {len(views)} views ({', '.join(v.name for v in views)})"


def predict_dataset_tta(model, dataset, views: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, C], labels [N])``: the mean over ``views`` of the model's probabilities.

    Each view runs as one ``predict`` over the whole (unshuffled) dataset, as plain evaluation
    does, so a distribution strategy splits it the same way.
    """
    from restransfer.data.memory_store import do_not_convert
    from restransfer.recipe.evaluate import predict_dataset, quiet_predict

    probabilities, labels = predict_dataset(model, dataset.map(
        do_not_convert(lambda images, targets: (views[0].apply(images), targets))))
    for view in views[1:]:
        images = dataset.map(do_not_convert(lambda images, targets, view=view: view.apply(images)))
        probabilities = probabilities + np.asarray(quiet_predict(model, images), np.float32)
    return probabilities / len(views), labels


def predict_batch_tta(model, images: np.ndarray, views: Sequence | None) -> np.ndarray:
    """Probabilities of one batch of images, averaged over ``views`` (plain prediction without)."""
    if not views:
        return np.asarray(model.predict_on_batch(images), np.float32)
    total = sum(np.asarray(model.predict_on_batch(np.asarray(view.apply(images))), np.float32) for view in views)
    return total / len(views)
