"""Grad-CAM: where in an image the network's last stage looks for a class.

Selvaraju et al. (2017): weight each channel of the last stage's feature map ``A`` by the
spatial mean of ``d logit_c / d A``, sum over channels, keep the positive part and upsample it
to the image. The model is split at the last backbone layer into a feature model and a head
model, so the gradient is a plain function of the feature map on every backend:
TensorFlow's GradientTape, or ``jax.grad`` over the head's ``stateless_call``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from restransfer.errors import ConfigError, RestransferError
from restransfer.models.stages import HEAD, INPUT, layer_stage


@dataclass
class GradCam:
    """Grad-CAM maps of a batch of images.

    Attributes:
        heatmaps: float32 ``[B, h, w]`` in 0..1 at the image's size (1 = most evidence).
        coarse: the maps at the feature map's resolution, before upsampling.
        classes: the class index explained for each image.
        probabilities: ``[B, C]`` model outputs.
        stage: the stage whose output was used (``conv5``, or ``conv4`` for CIFAR nets).
        layer: the name of that stage's last layer.
    """

    heatmaps: np.ndarray
    coarse: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    stage: str
    layer: str


def last_stage_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer of the last backbone stage (``conv5_block3_out`` for resnet50).

    Example:
        >>> last_stage_layer(create_model("cifar_resnet20")).name
        'conv4_block3_out'
    """
    backbone = [layer for layer in model.layers if layer_stage(layer.name) not in (HEAD, INPUT)]
    if not backbone:
        raise ConfigError(
            f"Grad-CAM needs a model whose layers are named after stages (conv1_..., conv5_...); "
            f"model '{model.name}' has none. Build it with restransfer.create_model or train a recipe.")
    return backbone[-1]


def _split(model: keras.Model) -> tuple[keras.Model, keras.Model, keras.layers.Layer]:
    """``(image -> last-stage features, features -> class logits, that layer)``."""
    layer = last_stage_layer(model)
    if len(layer.output.shape) != 4:
        raise ConfigError(f"Layer '{layer.name}' of model '{model.name}' outputs shape {layer.output.shape}; "
                          "Grad-CAM needs a spatial feature map [B, h, w, channels].")
    try:
        scores = model.get_layer("predictions").output  # logits: softmax would flatten the gradient
    except ValueError:
        scores = model.output
    features = keras.Model(model.input, layer.output, name="gradcam_features")
    head = keras.Model(layer.output, scores, name="gradcam_head")
    return features, head, layer


def _tensorflow_channel_weights(head: keras.Model, features, classes: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    features = tf.convert_to_tensor(features, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = head(features, training=False)
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    return np.asarray(tape.gradient(score, features))


def _jax_channel_weights(head: keras.Model, features, classes: np.ndarray) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in head.trainable_variables]
    non_trainable = [v.value for v in head.non_trainable_variables]
    picked = jnp.asarray(classes)

    def score(inputs):
        logits, _ = head.stateless_call(trainable, non_trainable, inputs, training=False)
        return jnp.sum(jnp.take_along_axis(logits, picked[:, None], axis=1))

    return np.asarray(jax.grad(score)(jnp.asarray(features, jnp.float32)))


_BACKENDS = {"tensorflow": _tensorflow_channel_weights, "jax": _jax_channel_weights}


def grad_cam(model: keras.Model, images, *, classes: int | Sequence[int] | None = None) -> GradCam:
    """Grad-CAM heatmaps on the last stage of a restransfer classifier.

    Args:
        model: a classifier built by restransfer (layers named ``conv1_...`` to ``conv5_...``
            and a ``predictions`` layer), e.g. a run's ``model.keras``.
        images: float32 ``[B, h, w, 3]`` as the model takes them (RGB 0..255 for run models).
        classes: the class to explain, one for all images or one per image; default each
            image's predicted class.

    Returns:
        A :class:`GradCam`; ``heatmaps[i]`` has the image's height and width.

    Example:
        >>> cam = grad_cam(model, read_images(["cat.jpg"], (224, 224)))
        >>> cam.stage, cam.heatmaps.shape
        ('conv5', (1, 224, 224))
    """
    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        raise RestransferError(f"Grad-CAM supports the {sorted(_BACKENDS)} backends; Keras runs on '{backend}'.")
    images = np.asarray(images, dtype="float32")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(f"grad_cam takes RGB images [B, h, w, 3]; received shape {images.shape}.")
    features_model, head, layer = _split(model)
    features = np.asarray(keras.ops.convert_to_numpy(
        keras.ops.cast(features_model(images, training=False), "float32")))
    probabilities = np.asarray(keras.ops.convert_to_numpy(model(images, training=False)), dtype=np.float32)
    num_classes = probabilities.shape[-1]
    if classes is None:
        picked = probabilities.argmax(axis=-1)
    else:
        picked = np.broadcast_to(np.asarray(classes, dtype=np.int64), (len(images),)).copy()
        if picked.min() < 0 or picked.max() >= num_classes:
            raise ConfigError(f"classes must be in 0..{num_classes - 1}; received {classes}.")
    gradients = _BACKENDS[backend](head, features, picked.astype(np.int32))
    weights = gradients.mean(axis=(1, 2), keepdims=True)  # one weight per channel
    coarse = np.maximum((weights * features).sum(axis=-1), 0.0)
    heatmaps = np.maximum(keras.ops.convert_to_numpy(keras.ops.image.resize(
        coarse[..., None], images.shape[1:3], interpolation="bilinear"))[..., 0], 0.0)
    return GradCam(heatmaps=_unit_peak(heatmaps), coarse=_unit_peak(coarse), classes=picked,
                   probabilities=probabilities, stage=layer_stage(layer.name), layer=layer.name)


def _unit_peak(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (an all-zero map, no positive evidence, stays zero)."""
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), 0.0).astype(np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """The heatmap blended over the image as uint8 RGB (matplotlib's "jet" colours)."""
    from matplotlib import colormaps

    image = np.clip(np.asarray(image, dtype=np.float32), 0, 255)
    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    return np.round((1 - alpha) * image + alpha * colours).astype(np.uint8)


def save_explanation(image: np.ndarray, heatmap: np.ndarray, path: str | Path, *, title: str = "") -> Path:
    """Save the image and its Grad-CAM overlay side by side as a PNG."""
    from matplotlib.figure import Figure

    from restransfer.training.plots import save_figure

    fig = Figure(figsize=(6.4, 3.6))
    for ax, picture, name in zip(fig.subplots(1, 2), (np.clip(image, 0, 255).astype(np.uint8),
                                                       overlay(image, heatmap)), ("image", "Grad-CAM")):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(path))


def explain_files(model: keras.Model, images: Sequence[str | Path], *, class_names: Sequence[str],
                  out: str | Path, image_size: Sequence[int] | None = None, resize: str | None = None,
                  label: str | None = None) -> list[dict]:
    """Grad-CAM of the predicted class (or of ``label``) for image files, each saved as image + overlay PNG.

    Args:
        model: a restransfer classifier (a run's ``model.keras``).
        images: image files; decoded and resized as evaluation does (``resize``).
        class_names: the label of each output.
        out: a ``.png`` file for a single image, else a folder that receives ``<name>.gradcam.png``.
        image_size: ``(h, w)``; default the model's input size.
        label: the class name to explain in every image (a multi-label model's label); default
            each image's most probable class.

    Returns:
        One dict per image: ``image``, ``explanation`` (the PNG), ``class``, ``probability``, ``stage``.
    """
    from restransfer.data.image_ops import read_images
    from restransfer.data.schema import DEFAULT_RESIZE

    out = Path(out)
    if out.suffix.lower() == ".png" and len(images) != 1:
        raise ConfigError(f"--out {out} is one PNG file but {len(images)} images were given; pass a folder.")
    size = tuple(image_size or model.input_shape[1:3])
    if None in size:
        raise ConfigError("The model takes any image size; give image_size=(h, w) for Grad-CAM.")
    if label is not None and label not in class_names:
        raise ConfigError(f"--label {label!r} is not one of the model's labels {list(class_names)}; give one of them.")
    batch = read_images(images, size, resize or DEFAULT_RESIZE)
    cam = grad_cam(model, batch, classes=None if label is None else list(class_names).index(label))
    results = []
    for i, path in enumerate(images):
        target = out if out.suffix.lower() == ".png" else out / f"{Path(path).stem}.gradcam.png"
        label, probability = class_names[cam.classes[i]], float(cam.probabilities[i, cam.classes[i]])
        save_explanation(batch[i], cam.heatmaps[i], target,
                         title=f"{Path(path).name}: {label} ({probability:.3f}), Grad-CAM on {cam.stage}")
        results.append({"image": str(path), "explanation": str(target), "class": label,
                        "probability": probability, "stage": cam.stage})
    return results
