"""The two image ops shared by training, `data check` and the exported serving graph.

Serving equals evaluation because export builds its graph from exactly these functions:

    image = decode_image(tf.io.read_file(path))        # uint8 [H, W, 3], RGB
    image = resize_for_eval(image, (224, 224))         # float32 [224, 224, 3], 0..255

Decoding policy (pure TensorFlow ops, so it lives inside a SavedModel):
- JPEG (baseline, progressive, grayscale and CMYK), PNG (8/16-bit, palette), GIF (first frame),
  BMP and WebP decode with ``tf.io.decode_image``; TensorFlow 2.21 decodes WebP natively.
- Grayscale becomes RGB by repeating the channel; CMYK JPEGs are converted to RGB by libjpeg.
- Alpha is composited over white, not dropped: transparent pixels often hold arbitrary colour
  (black, or leftovers of an editor) that dropping the alpha channel would expose.

Resize policy: the whole image is resized to ``image_size`` (aspect ratio not preserved, nothing
cropped away), the same geometry as ``keras.utils.image_dataset_from_directory``. ``method``
(the recipe's ``data.resize``):

- ``"area"`` (default): downscaling averages the covered pixels (antialiased); upscaling is
  bilinear. Of TensorFlow's fast resizes it is the closest to PIL's antialiased bilinear, the
  resize torchvision and timm weights were trained with (``benchmarks/pipeline_throughput.py``
  measures it).
- ``"bilinear"``: plain bilinear without antialiasing, exactly Keras'
  ``image_dataset_from_directory`` default; cheaper, but shrinking by more than ~1.2x aliases.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from restransfer.data.schema import DEFAULT_RESIZE, RESIZE_METHODS, ResizeMethod
from restransfer.errors import DataError


def decode_image(contents: tf.Tensor) -> tf.Tensor:
    """Decode encoded image bytes to an RGB ``uint8 [H, W, 3]`` tensor.

    Args:
        contents: scalar ``tf.string`` with the file's bytes (JPEG, PNG, GIF, BMP or WebP).

    Returns:
        ``tf.uint8`` tensor ``[H, W, 3]``.

    Example:
        >>> image = decode_image(tf.io.read_file("cat.jpg"))
    """
    image = tf.io.decode_image(contents, channels=0, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, None])
    channels = tf.shape(image)[-1]
    has_alpha = tf.logical_or(tf.equal(channels, 2), tf.equal(channels, 4))

    def composite() -> tf.Tensor:
        color = tf.cast(image[..., :-1], tf.float32)
        alpha = tf.cast(image[..., -1:], tf.float32) / 255.0
        over_white = color * alpha + 255.0 * (1.0 - alpha)
        return tf.cast(tf.round(over_white), tf.uint8)

    color = tf.cond(has_alpha, composite, lambda: image)
    color = tf.cond(tf.equal(tf.shape(color)[-1], 1),
                    lambda: tf.tile(color, [1, 1, 3]), lambda: color)
    color.set_shape([None, None, 3])
    return color


def resize_for_eval(image: tf.Tensor, image_size: Sequence[int],
                    method: ResizeMethod = DEFAULT_RESIZE) -> tf.Tensor:
    """Resize a decoded image to ``image_size`` the way evaluation and serving do.

    Args:
        image: ``[H, W, 3]`` (or batched ``[B, H, W, 3]``) uint8 or float image in 0..255.
        image_size: ``(height, width)``.
        method: ``"area"`` or ``"bilinear"`` (see the module docstring).

    Returns:
        ``tf.float32`` tensor ``[height, width, 3]`` in 0..255.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method must be one of {RESIZE_METHODS}; received {method!r}")
    height, width = (int(s) for s in image_size)
    if method == "bilinear":
        return tf.image.resize(image, (height, width), method="bilinear")
    shape = tf.shape(image)
    shrinks = tf.logical_and(shape[-3] >= height, shape[-2] >= width)
    # Downscaling: area averaging (an exact box filter, antialiased and several times faster
    # than antialiased bilinear). Upscaling or mixed: bilinear, antialiased along shrunk axes.
    resized = tf.cond(
        shrinks,
        lambda: tf.image.resize(image, (height, width), method="area"),
        lambda: tf.image.resize(image, (height, width), method="bilinear", antialias=True))
    # Float round-off can leave -1e-5 or 255.00002.
    return tf.clip_by_value(tf.cast(resized, tf.float32), 0.0, 255.0)


def read_images(paths: Sequence[str | os.PathLike], image_size: Sequence[int],
                method: ResizeMethod = DEFAULT_RESIZE) -> np.ndarray:
    """Read, decode and `resize_for_eval` image files: float32 ``[N, h, w, 3]`` in 0..255.

    What prediction, export samples and export verification feed the model: the validation
    pipeline's ops, one file at a time.

    Raises:
        DataError: a file is missing or is no image TensorFlow decodes (named in the message).

    Example:
        >>> batch = read_images(["cat.jpg", "dog.png"], (224, 224))
    """
    images = []
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"Image '{path}' does not exist.")
        try:
            image = decode_image(tf.io.read_file(os.fspath(path)))
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError,
                tf.errors.NotFoundError) as error:
            reason = op_error_reason(error).splitlines()[0][:200]
            raise DataError(f"Image '{path}' cannot be decoded ({reason}); JPEG, PNG, "
                            "GIF, BMP or WebP expected.") from None
        images.append(resize_for_eval(image, image_size, method).numpy())
    return np.stack(images).astype(np.float32)


def op_error_reason(error: tf.errors.OpError) -> str:
    """A TensorFlow op error's message without the ``{{function_node ...}}`` prefix and the
    `` [Op:...]`` suffix TensorFlow wraps it in."""
    return error.message.split("}}")[-1].strip().split(" [Op:")[0]
