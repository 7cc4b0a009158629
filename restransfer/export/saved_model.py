"""SavedModel export: serving signatures that take encoded images and return class names.

Signatures (TF Serving, ``tf.saved_model.load``, TFLite conversion all read them):

- ``serving_default``: ``image_bytes`` (``tf.string [batch]``: JPEG, PNG, GIF, BMP or WebP files;
  the signature takes any shape so that anything but a 1-D batch gets a message, not a shape error)
  -> ``probabilities`` (``float32 [batch, classes]``), ``classes`` (top-1 class name, ``string
  [batch]``) and ``scores`` (top-1 probability, ``float32 [batch]``). Decoding and resizing are
  ``restransfer.data.image_ops.decode_image`` and ``resize_for_eval``, the evaluation path, and
  the model holds its own ``Preprocess`` layer, so serving equals evaluation. Images whose header
  declares more than ``max_pixels``, and animated WebPs, are refused before decoding.
- ``serve_tensor``: ``images`` (``float32 [batch, height, width, 3]``, RGB in 0..255) -> the same.

A multi-label model's signatures also return ``labels`` (``string [batch]``: the names whose
probability is at or above their threshold, ``;``-joined, empty for none), and its thresholds
ship as ``assets/thresholds.json``.

Class names live in the graph (a constant) and in ``assets/class_names.txt``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from restransfer.data.image_ops import (
    FORMAT_NAMES,
    declared_pixels,
    decode_image,
    read_image_bytes,
    resize_for_eval,
    sniff_format,
    webp_animated,
)
from restransfer.data.schema import DEFAULT_RESIZE
from restransfer.data.sources import MAX_IMAGE_PIXELS
from restransfer.errors import DataError
from restransfer.export.artifact import THRESHOLDS_FILE, ExportError, call_model, write_thresholds
from restransfer.files import FileReadError, read_text

SERVING_DEFAULT = "serving_default"
SERVE_TENSOR = "serve_tensor"
BYTES_INPUT = "image_bytes"
TENSOR_INPUT = "images"
CLASS_NAMES_ASSET = "class_names.txt"
# Ops that call back into the Python interpreter: a SavedModel holding one cannot be served.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


def _item_problem(contents: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """Why one item of ``image_bytes`` was not decoded, as a phrase (only ever called for an
    item that failed): checked in the order a reader would want to hear it."""
    length = tf.strings.length(contents)
    fmt = sniff_format(contents)
    # extract_jpeg_shape fails on a broken JPEG header; tf.data turns that failure into -1
    # instead of an error that would hide the item's index.
    pixels = (tf.data.Dataset.from_tensors(contents).map(declared_pixels).ignore_errors()
              .concatenate(tf.data.Dataset.from_tensors(tf.constant(-1, tf.int64)))
              .take(1).get_single_element())
    name = tf.gather(tf.constant(FORMAT_NAMES), tf.maximum(fmt, 0))
    size = tf.strings.join(["(", tf.strings.as_string(length), " bytes)"])
    return tf.case([
        (tf.equal(length, 0), lambda: tf.constant("is empty (0 bytes)")),
        (fmt < 0, lambda: tf.strings.join(["is not a JPEG, PNG, GIF, BMP or WebP image ", size])),
        (webp_animated(contents), lambda: tf.constant(
            "is an animated WebP (the TensorFlow WebP decoder crashes on animations: send one "
            "frame as a still image)")),
        (pixels > max_pixels, lambda: tf.strings.join([
            "declares ", tf.strings.as_string(pixels), " pixels, above the limit of ",
            str(max_pixels), " this model was exported with (max_pixels)"])),
        (pixels < 0, lambda: tf.strings.join(["is a ", name, " whose header cannot be read ", size])),
    ], default=lambda: tf.strings.join(
        ["is a corrupt or truncated ", name, " image ", size, " that cannot be decoded"]))


def serving_functions(model: keras.Model, image_size: Sequence[int], class_names: Sequence[str],
                      resize: str = DEFAULT_RESIZE, max_pixels: int = MAX_IMAGE_PIXELS,
                      thresholds: Sequence[float] | None = None):
    """The two serving functions, as plain Python callables ready for ``tf.function``.

    ``thresholds`` (a multi-label model's, one per label) add the ``labels`` output.

    ``resize`` is the run's ``data.resize`` (``resize_for_eval``'s method); images whose header
    declares more than ``max_pixels`` are refused before decoding.

    A request with a bad item fails as a whole with a message naming the item and why
    (``image_bytes[2] is a corrupt or truncated JPEG image (3120 bytes) that cannot be
    decoded; ...``); the server goes on serving. Items are decoded through ``tf.data`` with
    ``ignore_errors``: a graph cannot catch a failing decoder, but a dataset can drop the
    element, and the missing index tells which item failed. A batch of 0 images gives 0 rows.

    Returns:
        ``(serve_bytes, serve_tensor)``; each returns ``{"probabilities", "classes", "scores"}``.
    """
    height, width = (int(s) for s in image_size)
    names = [str(name) for name in class_names]
    num_classes = len(names)
    max_pixels = int(max_pixels)

    def outputs(probabilities):
        # Mixed-precision models may compute in float16; clients always get float32.
        probabilities = tf.cast(probabilities, tf.float32)
        top = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        result = {
            "probabilities": probabilities,
            "classes": tf.gather(tf.constant(names, dtype=tf.string), top),
            "scores": tf.reduce_max(probabilities, axis=-1),
        }
        if thresholds is not None:
            present = probabilities >= tf.constant(thresholds, tf.float32)
            every = tf.broadcast_to(tf.constant(names, dtype=tf.string), tf.shape(probabilities))
            result["labels"] = tf.strings.reduce_join(tf.ragged.boolean_mask(every, present), axis=-1,
                                                      separator=";")
        return result

    def decode_one(index, contents):
        allowed = tf.logical_and(sniff_format(contents) >= 0,
                                 declared_pixels(contents) <= max_pixels)
        # decode_image refuses animated WebPs itself; checked here too, before any decoding.
        allowed = tf.logical_and(allowed, tf.logical_not(webp_animated(contents)))
        with tf.control_dependencies([tf.debugging.Assert(allowed, [index])]):
            image = decode_image(tf.identity(contents))
        return index, resize_for_eval(image, (height, width), resize)

    def serve_tensor(images):
        # Keras layers (BatchNorm's broadcasting) fail on an empty batch.
        return outputs(tf.cond(
            tf.shape(images)[0] > 0, lambda: tf.cast(call_model(model, images), tf.float32),
            lambda: tf.zeros([0, num_classes], tf.float32)))

    def serve_bytes(image_bytes):
        rank = tf.rank(image_bytes)
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(rank, 1), [tf.strings.format(
                "image_bytes must be a list (a 1-D batch) of encoded images; received a tensor of "
                "rank {} (wrap a single image in a list)", rank)])]):
            items = tf.reshape(image_bytes, [-1])
        count = tf.shape(items)[0]
        decoded = (tf.data.Dataset.from_tensor_slices((tf.range(count), items))
                   .map(decode_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                   .ignore_errors()
                   # One extra element so that the batch below exists even when nothing decoded.
                   .concatenate(tf.data.Dataset.from_tensors(
                       (tf.constant(-1), tf.zeros([height, width, 3], tf.float32))))
                   .batch(tf.cast(count, tf.int64) + 1).get_single_element())
        indices, images = decoded[0][:-1], decoded[1][:-1]
        good = tf.shape(indices)[0]
        # Items keep their order, so the first failed item is the first index out of place.
        out_of_place = tf.where(tf.not_equal(indices, tf.range(good)))[:, 0]
        first_bad = tf.cond(tf.size(out_of_place) > 0,
                            lambda: tf.cast(out_of_place[0], tf.int32), lambda: good)
        def message():
            failed = count - good
            return tf.strings.join([
                "image_bytes[", tf.strings.as_string(first_bad), "] ",
                _item_problem(items[first_bad], max_pixels),
                tf.cond(failed > 1, lambda: tf.strings.join([
                    " (", tf.strings.as_string(failed), " of the ", tf.strings.as_string(count),
                    " items failed)"]), lambda: tf.constant("")),
                "; send the encoded bytes of each image file (base64 in JSON requests)"])

        message = tf.cond(good < count, message, lambda: tf.constant(""))
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(good, count), [message])]):
            images = tf.identity(images)
        return serve_tensor(images)

    return serve_bytes, serve_tensor


def write_saved_model(model: keras.Model, path: Path, class_names: Sequence[str],
                      image_size: Sequence[int], assets: Mapping[str, Path] | None = None,
                      *, tensor_only: bool = False, resize: str = DEFAULT_RESIZE,
                      max_pixels: int = MAX_IMAGE_PIXELS, thresholds: Sequence[float] | None = None) -> None:
    """Write ``model`` as a SavedModel with the two serving signatures and asset files.

    Args:
        model: a Keras model taking float32 RGB 0..255 images, returning probabilities.
        path: the SavedModel directory to create.
        class_names: one name per output unit.
        image_size: ``(height, width)`` the model takes.
        assets: asset name -> file to copy into ``assets/`` (e.g. the recipe, the metrics).
        tensor_only: write only ``serve_tensor`` (as TFLite's source: TFLite has no image decoders).
        resize: how ``serving_default`` resizes decoded images (``resize_for_eval``'s method).
        max_pixels: ``serving_default`` refuses images whose header declares more pixels.
        thresholds: a multi-label model's threshold per label: the ``labels`` output and
            ``assets/thresholds.json``.
    """
    height, width = (int(s) for s in image_size)
    serve_bytes, serve_tensor = serving_functions(model, (height, width), class_names, resize,
                                                  max_pixels, thresholds)
    archive = keras.export.ExportArchive()
    archive.track(model)
    tensor_spec = tf.TensorSpec([None, height, width, 3], tf.float32, name=TENSOR_INPUT)
    if not tensor_only:
        # Any rank, so that a scalar or a nested list gets our message, not a shape mismatch.
        archive.add_endpoint(SERVING_DEFAULT, serve_bytes,
                             [tf.TensorSpec(None, tf.string, name=BYTES_INPUT)])
    archive.add_endpoint(SERVE_TENSOR, serve_tensor, [tensor_spec])
    with tempfile.TemporaryDirectory() as scratch:
        if not tensor_only:
            labels = Path(scratch) / CLASS_NAMES_ASSET
            labels.write_text("".join(f"{name}\n" for name in class_names))
            files = {"class_names": labels, **(assets or {})}
            if thresholds is not None:
                files["thresholds"] = Path(scratch) / THRESHOLDS_FILE
                write_thresholds(files["thresholds"], class_names, thresholds)
            # ExportArchive has no public hook for asset files; tf.saved_model.Asset objects
            # reachable from the saved root are copied into assets/ (under their file names)
            # and listed in the SavedModel.
            archive._tf_trackable.restransfer_assets = {
                key: tf.saved_model.Asset(str(file)) for key, file in files.items()
            }
        archive.write_out(str(path), verbose=False)


def _saved_model_proto(path: Path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    return proto


def python_ops(path: Path) -> set[str]:
    """Op types in the SavedModel that run Python code (must be empty for serving)."""
    found = set()
    for meta_graph in _saved_model_proto(path).meta_graphs:
        nodes = list(meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            nodes.extend(function.node_def)
        found.update(node.op for node in nodes if node.op in PYTHON_OPS)
    return found


def is_saved_model(path: str | os.PathLike) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


def load_serving(directory: str | os.PathLike) -> tuple[Callable[[Sequence[str | os.PathLike]], np.ndarray],
                                                        list[str]]:
    """An exported SavedModel's ``serving_default``, loaded once, and its class names.

    Returns:
        ``(serve, class_names)``: ``serve(image_paths)`` reads the files (at most
        ``MAX_IMAGE_BYTES`` each) and returns their probabilities ``[N, classes]``; an image the
        signature refuses (too many pixels, animated WebP, not an image) is a `DataError`
        naming the file.
    """
    directory = Path(directory)
    if not is_saved_model(directory):
        raise ExportError(f"'{directory}' is not a SavedModel directory (no saved_model.pb).")
    loaded = tf.saved_model.load(str(directory))
    signature = loaded.signatures.get(SERVING_DEFAULT)
    labels = directory / "assets" / CLASS_NAMES_ASSET
    if signature is None or BYTES_INPUT not in signature.structured_input_signature[1] or not labels.is_file():
        raise ExportError(
            f"'{directory}' is not a restransfer SavedModel: it needs a '{SERVING_DEFAULT}' signature "
            f"taking '{BYTES_INPUT}' and assets/{CLASS_NAMES_ASSET}. Re-export the run."
        )
    try:
        class_names = read_text(labels).splitlines()
    except (OSError, ValueError) as error:
        reason = error.reason if isinstance(error, FileReadError) else error
        raise ExportError(f"'{labels}' cannot be read ({reason}); re-export the run.") from None

    def serve(image_paths: Sequence[str | os.PathLike]) -> np.ndarray:
        batch = [Path(p) for p in image_paths]
        contents = [read_image_bytes(path) for path in batch]
        try:
            return signature(**{BYTES_INPUT: tf.constant(contents)})["probabilities"].numpy()
        except tf.errors.InvalidArgumentError as error:
            raise DataError(_name_bad_image(error.message, batch)) from None

    # The signature holds `loaded`'s variables only while `loaded` lives.
    serve.loaded = loaded
    return serve, class_names


def predict_saved_model(directory: str | os.PathLike, image_paths: Sequence[str | os.PathLike], *,
                        top_k: int = 5, batch_size: int = 32) -> list[dict]:
    """Top-k predictions of an exported SavedModel's ``serving_default`` for image files.

    The same result shape as ``restransfer.predict`` on a run folder.

    Args:
        directory: a SavedModel written by ``restransfer export --format saved_model``.
        image_paths: image files (JPEG, PNG, GIF, BMP, WebP).
        top_k: labels per image.
        batch_size: images per call.

    Returns:
        One dict per image, in order: ``{"image": path, "top": [(label, probability), ...]}``;
        a multi-label export adds ``"labels"``: those at or above their thresholds, most probable first.

    Example:
        >>> predict_saved_model("runs/flowers/export/saved_model", ["rose.jpg"], top_k=1)[0]["top"]
        [('roses', 0.93)]
    """
    serve, class_names = load_serving(directory)
    thresholds = _thresholds(Path(directory), class_names)
    k = max(1, min(top_k, len(class_names)))
    results = []
    paths = [Path(p) for p in image_paths]
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        for path, row in zip(batch, serve(batch)):
            order = np.argsort(-row, kind="stable")
            result = {"image": str(path), "top": [(class_names[i], float(row[i])) for i in order[:k]]}
            if thresholds is not None:
                result["labels"] = [(class_names[i], float(row[i])) for i in order if row[i] >= thresholds[i]]
            results.append(result)
    return results


def _thresholds(directory: Path, class_names: Sequence[str]) -> list[float] | None:
    """A multi-label SavedModel's threshold per label (``assets/thresholds.json``), None without one."""
    import json

    path = directory / "assets" / THRESHOLDS_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(read_text(path))["thresholds"]
        return [float(values[name]) for name in class_names]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ExportError(f"'{path}' is damaged ({error}); re-export the run.") from None


def _name_bad_image(message: str, batch: Sequence[Path]) -> str:
    import re

    match = re.search(r"image_bytes\[(\d+)\] (.*?)(?: \(\d+ of the \d+ items failed\))?; send", message)
    if match:
        return f"'{batch[int(match.group(1))]}' {match.group(2)}."
    detail = message.strip().splitlines()[-1] if message.strip() else message
    return (f"One of {[str(p) for p in batch]} could not be decoded ({detail}); "
            "check them with `restransfer data check`.")
