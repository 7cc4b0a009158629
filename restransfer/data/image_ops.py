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

Size policy: decoding allocates what the header declares, so a 64 KB PNG that declares
23000x23000 pixels takes 2 GB. `declared_pixels` reads the width and height from the header
(no decoding) and every reader refuses images above ``MAX_IMAGE_PIXELS`` (the exported serving
graph above the limit it was exported with) before decoding. Animated WebPs are refused from
their header too (`webp_animated`; TensorFlow 2.21's WebP decoder crashes the process on them):
`decode_image` asserts it, so no reader can reach the decoder with one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from restransfer.data.schema import DEFAULT_RESIZE, RESIZE_METHODS, ResizeMethod
from restransfer.data.sources import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from restransfer.data.webp import (
    ANIMATED_WEBP_PROBLEM,
    ANIMATION_CHUNKS,
    ANIMATION_FLAG,
    MAX_WEBP_CHUNKS,
    animated_webp,
)
from restransfer.errors import DataError
from restransfer.files import FileReadError, read_regular_file

FORMAT_NAMES = ("JPEG", "PNG", "GIF", "BMP", "WebP")


def sniff_format(contents: tf.Tensor) -> tf.Tensor:
    """Index into ``FORMAT_NAMES`` of the format the bytes' magic number names, or -1.

    Works on any string, also an empty one (the bytes are padded before they are looked at).
    """
    padded = tf.strings.join([contents, b"\0" * 16])
    head4 = tf.strings.substr(padded, 0, 4)
    checks = tf.stack([
        tf.equal(tf.strings.substr(padded, 0, 3), b"\xff\xd8\xff"),
        tf.equal(tf.strings.substr(padded, 0, 8), b"\x89PNG\r\n\x1a\n"),
        tf.equal(head4, b"GIF8"),
        tf.equal(tf.strings.substr(padded, 0, 2), b"BM"),
        tf.logical_and(tf.equal(head4, b"RIFF"),
                       tf.equal(tf.strings.substr(padded, 8, 4), b"WEBP")),
    ])
    return tf.where(tf.reduce_any(checks), tf.argmax(tf.cast(checks, tf.int32), output_type=tf.int32),
                    -1)


def declared_pixels(contents: tf.Tensor) -> tf.Tensor:
    """Width x height (``int64``) that an image's header declares, read without decoding.

    PNG (IHDR), GIF (logical screen), BMP (info header), WebP (VP8, VP8L, VP8X) are parsed from
    their first 30 bytes; JPEG uses ``tf.image.extract_jpeg_shape`` (which fails on a broken
    header, as decoding would). Unknown formats give 0.
    """
    head = tf.cast(tf.io.decode_raw(
        tf.strings.substr(tf.strings.join([contents, b"\0" * 32]), 0, 32), tf.uint8), tf.int64)

    def little(start: int, count: int) -> tf.Tensor:
        return sum(head[start + i] * (256 ** i) for i in range(count))

    def big(start: int, count: int) -> tf.Tensor:
        return sum(head[start + i] * (256 ** (count - 1 - i)) for i in range(count))

    def jpeg():
        shape = tf.image.extract_jpeg_shape(contents, output_type=tf.int64)
        return shape[0] * shape[1]

    def bmp():
        core = tf.equal(little(14, 4), 12)  # BITMAPCOREHEADER: 16-bit sizes
        width = tf.where(core, little(18, 2), little(18, 4))
        height = tf.where(core, little(20, 2), little(22, 4))
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down bitmaps: negative
        return width * height

    def webp():
        chunk = tf.strings.substr(tf.strings.join([contents, b"\0" * 32]), 12, 4)
        # 14-bit fields: VP8L packs width-1 and height-1 after its signature byte.
        bits = little(21, 4)
        lossless = bits % 2**14 + 1, (bits // 2**14) % 2**14 + 1
        extended = little(24, 3) + 1, little(27, 3) + 1
        lossy = little(26, 2) % 2**14, little(28, 2) % 2**14
        return tf.case([(tf.equal(chunk, b"VP8L"), lambda: lossless[0] * lossless[1]),
                        (tf.equal(chunk, b"VP8X"), lambda: extended[0] * extended[1])],
                       default=lambda: lossy[0] * lossy[1])

    return tf.switch_case(sniff_format(contents), branch_fns=[
        jpeg, lambda: big(16, 4) * big(20, 4), lambda: little(6, 2) * little(8, 2), bmp, webp,
    ], default=lambda: tf.constant(0, tf.int64))


def webp_animated(contents: tf.Tensor) -> tf.Tensor:
    """Whether encoded bytes are an animated WebP (scalar ``tf.bool``), read from the header.

    The graph twin of `restransfer.data.webp.animated_webp`: the VP8X animation flag, or an ANIM
    or ANMF chunk among the first chunks.
    """
    length = tf.cast(tf.strings.length(contents), tf.int64)
    padded = tf.strings.join([contents, b"\0" * 32])

    def byte(position) -> tf.Tensor:
        return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, position, 1), tf.uint8)[0],
                       tf.int64)

    def chunk_walk() -> tf.Tensor:
        def more(i, position, found):
            return tf.logical_and(tf.logical_and(i < MAX_WEBP_CHUNKS, position + 8 <= length),
                                  tf.logical_not(found))

        def step(i, position, found):
            fourcc = tf.strings.substr(padded, position, 4)
            found = tf.reduce_any(tf.equal(fourcc, list(ANIMATION_CHUNKS)))
            size = sum(byte(position + 4 + k) * (256 ** k) for k in range(4))
            return i + 1, position + 8 + size + size % 2, found

        return tf.while_loop(more, step, (tf.constant(0), tf.constant(12, tf.int64),
                                          tf.constant(False)))[2]

    flagged = tf.logical_and(tf.equal(tf.strings.substr(padded, 12, 4), b"VP8X"),
                             tf.not_equal(tf.bitwise.bitwise_and(byte(20), ANIMATION_FLAG), 0))
    return tf.cond(tf.equal(sniff_format(contents), FORMAT_NAMES.index("WebP")),
                   lambda: tf.logical_or(flagged, chunk_walk()), lambda: tf.constant(False))


def decode_image(contents: tf.Tensor) -> tf.Tensor:
    """Decode encoded image bytes to an RGB ``uint8 [H, W, 3]`` tensor.

    Args:
        contents: scalar ``tf.string`` with the file's bytes (JPEG, PNG, GIF, BMP or WebP).

    Returns:
        ``tf.uint8`` tensor ``[H, W, 3]``.

    Example:
        >>> image = decode_image(tf.io.read_file("cat.jpg"))
    """
    still = tf.debugging.Assert(tf.logical_not(webp_animated(contents)),
                                [f"The image is refused: {ANIMATED_WEBP_PROBLEM}."])
    with tf.control_dependencies([still]):
        contents = tf.identity(contents)
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


def read_image_bytes(path: str | os.PathLike, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """A regular file's bytes (at most ``max_bytes``); `DataError` naming the file otherwise."""
    if not os.path.lexists(path):
        raise DataError(f"Image '{path}' does not exist.")
    try:
        return read_regular_file(path, max_bytes)
    except FileReadError as error:
        raise DataError(f"Image '{path}' cannot be read: {error.reason}.") from None


def pixel_limit_problem(contents: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Why encoded bytes must not be decoded (their header declares too many pixels, or an
    animation), or None."""
    if animated_webp(contents):
        return ANIMATED_WEBP_PROBLEM
    try:
        pixels = int(declared_pixels(tf.constant(contents)))
    except tf.errors.OpError:
        return None  # a broken header: decoding names the problem
    if pixels > max_pixels:
        return (f"its header declares {pixels:,} pixels, above the limit of {max_pixels:,} "
                "(MAX_IMAGE_PIXELS); it is not decoded")
    return None


def read_images(paths: Sequence[str | os.PathLike], image_size: Sequence[int],
                method: ResizeMethod = DEFAULT_RESIZE,
                max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read, decode and `resize_for_eval` image files: float32 ``[N, h, w, 3]`` in 0..255.

    What prediction, export samples and export verification feed the model: the validation
    pipeline's ops, one file at a time. Only regular files of at most ``MAX_IMAGE_BYTES`` are
    read, and images declaring more than ``max_pixels`` are refused before decoding.

    Raises:
        DataError: a file is missing, is not a regular file, is too large, or is no image
            TensorFlow decodes (named in the message).

    Example:
        >>> batch = read_images(["cat.jpg", "dog.png"], (224, 224))
    """
    images = []
    for path in paths:
        contents = read_image_bytes(path)
        problem = pixel_limit_problem(contents, max_pixels)
        if problem:
            raise DataError(f"Image '{path}' is refused: {problem}.")
        try:
            image = decode_image(tf.constant(contents))
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
