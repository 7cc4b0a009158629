"""Batched training augmentation from the recipe's `augment:` section (Keras core layers).

``keras_cv:`` adds the keras-cv layers that Keras core lacks (GridMask, JitteredResize,
FourierMix, ChannelShuffle, RandomChannelShift, RandomJpegQuality; the `keras-cv` extra). They
are TensorFlow ops, so like the core layers they run here in tf.data on every backend
(benchmarks/keras_cv_augment.py checked them on TensorFlow and JAX).

Applied in the tf.data map after `cache`, so images are decoded once and augmented every epoch.
Keras preprocessing layers run on the TensorFlow backend inside tf.data whatever the Keras
backend, so this works for JAX training too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import tensorflow as tf

from restransfer.data.schema import AugmentConfig, RandomResizedCrop
from restransfer.errors import ConfigError

Batch = tuple[tf.Tensor, tf.Tensor]


def random_resized_crop_boxes(batch: int, crop: RandomResizedCrop, aspect: float,
                              seed: tf.Tensor) -> tf.Tensor:
    """Sample one Inception-style crop box per image, ``[batch, 4]`` normalised y1, x1, y2, x2.

    Area fraction is uniform in ``crop.scale``, aspect ratio log-uniform in ``crop.ratio``
    (as torchvision's ``RandomResizedCrop``); boxes that do not fit are clipped to the image.
    ``aspect`` is the image's width / height, so ratios refer to pixels, not normalised units.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    area = tf.random.stateless_uniform([batch], seeds[0], crop.scale[0], crop.scale[1])
    log_ratio = tf.random.stateless_uniform(
        [batch], seeds[1], tf.math.log(crop.ratio[0]), tf.math.log(crop.ratio[1]))
    ratio = tf.exp(log_ratio) / aspect
    height = tf.minimum(tf.sqrt(area / ratio), 1.0)
    width = tf.minimum(tf.sqrt(area * ratio), 1.0)
    offsets = tf.random.stateless_uniform([batch, 2], seeds[2])
    y1 = offsets[:, 0] * (1.0 - height)
    x1 = offsets[:, 1] * (1.0 - width)
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=1)


@dataclass(eq=False)  # hashable by identity: tf.function(augment) keys its traces on it
class Augment:
    """``augment(images, labels) -> (images, labels)`` for batches, and what draws its randomness.

    ``random_parts`` holds every object with random state the augmentation draws from (Keras
    layers with their seed generators, tf.random.Generators), so that the state can be set for
    an epoch (`restransfer.training.seeds.reseed`): a resumed run then augments its next epoch
    as the uninterrupted run did.
    """

    apply: Callable[[tf.Tensor, tf.Tensor], Batch]
    random_parts: list = field(default_factory=list)

    def __call__(self, images: tf.Tensor, labels: tf.Tensor) -> Batch:
        return self.apply(images, labels)


def build_augment(augment: AugmentConfig, image_size: Sequence[int], seed: int = 0) -> Augment | None:
    """Return the batch augmentation ``f(images, labels) -> (images, labels)``, or ``None`` when off.

    Images are float32 ``[B, h, w, 3]`` in 0..255 and stay so; labels are one-hot (or 0/1 multi-label) float32 and
    are mixed by MixUp/CutMix (one of the two per batch, chosen at random, when both are set).
    """
    if not augment.enabled:
        return None
    height, width = (int(s) for s in image_size)
    layers: list[keras.layers.Layer] = []
    if augment.flip:
        layers.append(keras.layers.RandomFlip(augment.flip, seed=seed))
    if augment.rotation:
        layers.append(keras.layers.RandomRotation(augment.rotation / 360.0, fill_mode="reflect",
                                                  seed=seed + 1))
    if augment.zoom:
        layers.append(keras.layers.RandomZoom(augment.zoom, fill_mode="reflect", seed=seed + 2))
    if augment.color_jitter:
        jitter = augment.color_jitter
        factors = {
            "brightness_factor": jitter.brightness or None,
            "contrast_factor": jitter.contrast or None,
            "saturation_factor": ((1 - jitter.saturation, 1 + jitter.saturation)
                                  if jitter.saturation else None),
            "hue_factor": jitter.hue or None,
        }
        layers.append(keras.layers.RandomColorJitter(value_range=(0, 255), seed=seed + 3,
                                                     **factors))
    if augment.rand_augment:
        layers.append(keras.layers.RandAugment(
            value_range=(0, 255), num_ops=augment.rand_augment.num_ops,
            factor=augment.rand_augment.magnitude, seed=seed + 4))
    cv_layers, cv_mixers = keras_cv_layers(augment.keras_cv, (height, width), seed + 9)
    layers += cv_layers
    mixers = []
    if augment.mixup:
        mixers.append(keras.layers.MixUp(alpha=augment.mixup, seed=seed + 5))
    if augment.cutmix:
        mixers.append(keras.layers.CutMix(factor=augment.cutmix, seed=seed + 6))

    crop = augment.random_resized_crop
    crop_seed = tf.random.Generator.from_seed(seed + 7) if crop else None
    mix_choice = tf.random.Generator.from_seed(seed + 8) if len(mixers) == 2 else None

    def apply(images: tf.Tensor, labels: tf.Tensor) -> Batch:
        if crop is not None:
            batch = tf.shape(images)[0]
            boxes = random_resized_crop_boxes(batch, crop, width / height,
                                              crop_seed.make_seeds(1)[:, 0])
            images = tf.image.crop_and_resize(images, boxes, tf.range(batch), (height, width))
        for layer in layers:
            images = layer(images, training=True)
        images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)
        for layer in cv_mixers:
            images, labels = _mix(layer, images, labels)
        if len(mixers) == 1:
            images, labels = _mix(mixers[0], images, labels)
        elif mixers:
            images, labels = tf.cond(
                mix_choice.uniform([]) < 0.5,
                lambda: _mix(mixers[0], images, labels),
                lambda: _mix(mixers[1], images, labels))
        return images, labels

    generators = [g for g in (crop_seed, mix_choice) if g is not None]
    return Augment(apply, [*layers, *cv_mixers, *mixers, *generators])


def _mix(layer: keras.layers.Layer, images: tf.Tensor, labels: tf.Tensor) -> Batch:
    out = layer({"images": images, "labels": labels}, training=True)
    return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)


# keras-cv layers that mix images and their labels (called on {"images", "labels"}).
_KERAS_CV_MIXERS = ("FourierMix",)
# What restransfer sets itself: the pixel range, the output size, the seed.
_KERAS_CV_DEFAULTS = {
    "RandomChannelShift": {"value_range": (0, 255), "factor": 0.1},
    "RandomJpegQuality": {"factor": (75, 100)},
    "JitteredResize": {"scale_factor": (0.8, 1.25), "bounding_box_format": "xyxy"},
}


def keras_cv_layers(config: dict, image_size: tuple[int, int], seed: int
                    ) -> tuple[list[keras.layers.Layer], list[keras.layers.Layer]]:
    """``(image layers, label-mixing layers)`` for the recipe's ``augment.keras_cv`` mapping."""
    if not config:
        return [], []
    try:
        import keras_cv
    except ImportError:
        raise ConfigError("augment.keras_cv needs keras-cv: pip install 'restransfer[keras-cv]' "
                          "(or remove augment.keras_cv).") from None
    layers, mixers = [], []
    for index, (name, options) in enumerate(config.items()):
        kwargs = {**_KERAS_CV_DEFAULTS.get(name, {}), **options, "seed": seed + index}
        if name == "JitteredResize":
            kwargs["target_size"] = tuple(image_size)
        try:
            layer = getattr(keras_cv.layers, name)(**kwargs)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"augment.keras_cv.{name}: {error}. Received {options}; see keras_cv.layers.{name} "
                              "for its arguments.") from None
        (mixers if name in _KERAS_CV_MIXERS else layers).append(layer)
    return layers, mixers
