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


def predict_batch_tta(model, images: np.ndarray, views: Sequence | None) -> np.ndarray:
    """Probabilities of one batch of images, averaged over ``views`` (plain prediction without)."""
    if not views:
        return np.asarray(model.predict_on_batch(images), np.float32)
    total = sum(np.asarray(model.predict_on_batch(np.asarray(view.apply(images))), np.float32) for view in views)
    return total / len(views)
