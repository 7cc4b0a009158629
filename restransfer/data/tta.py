"""Test-time augmentation: the views of a batch whose predicted probabilities are averaged.

The views are the identity, a horizontal flip (``flip``), and up to five crops (``crops``: the
centre, then the four corners in the order top-left, top-right, bottom-left, bottom-right), each
covering ``crop_fraction`` of the height and width and resized back to the input size. With a
flip and crops, every crop is also flipped. TensorFlow ops (a ``tf.data`` map or eager arrays). Every view keeps the batch's shape, so the model and
its preprocessing see images exactly as in evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_CROPS = 5
# The crop covers 87.5% of each side: the 224/256 ratio of the ImageNet evaluation crop.
CROP_FRACTION = 0.875
_CORNERS = ((0.5, 0.5), (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))  # (top, left) of the free margin


@dataclass(frozen=True)
class View:
    """One view: its name and ``images [B, H, W, 3] -> images [B, H, W, 3]``."""

    name: str
    apply: Callable[[Any], Any]


def tta_views(*, flip: bool = True, crops: int = 0, crop_fraction: float = CROP_FRACTION) -> list[View]:
    """The views to average: the identity, then the flip, then crops (and their flips).

    Example:
        >>> [view.name for view in tta_views(flip=True, crops=1)]
        ['identity', 'flip', 'crop-centre', 'crop-centre+flip']
    """
    if not 0 <= crops <= MAX_CROPS:
        raise ValueError(f"crops must be 0..{MAX_CROPS}; received {crops}")
    views = [View("identity", lambda images: images)]
    if flip:
        views.append(View("flip", flip_horizontal))
    names = ("centre", "top-left", "top-right", "bottom-left", "bottom-right")
    for (top, left), name in zip(_CORNERS[:crops], names):
        crop = _crop(top, left, crop_fraction)
        views.append(View(f"crop-{name}", crop))
        if flip:
            views.append(View(f"crop-{name}+flip", lambda images, crop=crop: flip_horizontal(crop(images))))
    return views


def flip_horizontal(images):
    """``[B, H, W, C]`` images mirrored left to right."""
    import tensorflow as tf

    return tf.reverse(images, axis=[2])


def _crop(top: float, left: float, fraction: float) -> Callable[[Any], Any]:
    def crop(images):
        import tensorflow as tf

        images = tf.convert_to_tensor(images, tf.float32)
        height, width = images.shape[1], images.shape[2]
        h, w = max(1, round(height * fraction)), max(1, round(width * fraction))
        y, x = round((height - h) * top), round((width - w) * left)
        window = images[:, y:y + h, x:x + w, :]
        return tf.image.resize(window, (height, width), method="bilinear")

    return crop
