"""SavedModel export: serving signatures that take encoded images and return class names.

Signatures (TF Serving, ``tf.saved_model.load``, TFLite conversion all read them):

- ``serving_default``: ``image_bytes`` (``tf.string [batch]``: JPEG, PNG, GIF, BMP or WebP files)
  -> ``probabilities`` (``float32 [batch, classes]``), ``classes`` (top-1 class name, ``string
  [batch]``) and ``scores`` (top-1 probability, ``float32 [batch]``). Decoding and resizing are
  ``restransfer.data.image_ops.decode_image`` and ``resize_for_eval``, the evaluation path, and
  the model holds its own ``Preprocess`` layer, so serving equals evaluation.
- ``serve_tensor``: ``images`` (``float32 [batch, height, width, 3]``, RGB in 0..255) -> the same.

Class names live in the graph (a constant) and in ``assets/class_names.txt``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from restransfer.data.image_ops import decode_image, resize_for_eval
from restransfer.data.schema import DEFAULT_RESIZE
from restransfer.errors import DataError
from restransfer.export.artifact import ExportError, call_model

SERVING_DEFAULT = "serving_default"
SERVE_TENSOR = "serve_tensor"
BYTES_INPUT = "image_bytes"
TENSOR_INPUT = "images"
CLASS_NAMES_ASSET = "class_names.txt"
# Ops that call back into the Python interpreter: a SavedModel holding one cannot be served.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


def _is_supported_image(contents: tf.Tensor) -> tf.Tensor:
    """True when the bytes start like a format ``decode_image`` reads (by magic number)."""
    head = tf.strings.substr(contents, 0, 4)
    return tf.reduce_any(tf.stack([
        tf.io.is_jpeg(contents),
        tf.equal(head, b"\x89PNG"),
        tf.equal(head, b"GIF8"),
        tf.equal(tf.strings.substr(contents, 0, 2), b"BM"),
        tf.logical_and(tf.equal(head, b"RIFF"), tf.equal(tf.strings.substr(contents, 8, 4), b"WEBP")),
    ]))


def serving_functions(model: keras.Model, image_size: Sequence[int], class_names: Sequence[str],
                      resize: str = DEFAULT_RESIZE):
    """The two serving functions, as plain Python callables ready for ``tf.function``.

    ``resize`` is the run's ``data.resize`` (``resize_for_eval``'s method).

    Returns:
        ``(serve_bytes, serve_tensor)``; each returns ``{"probabilities", "classes", "scores"}``.
    """
    height, width = (int(s) for s in image_size)
    names = [str(name) for name in class_names]

    def outputs(probabilities):
        # Mixed-precision models may compute in float16; clients always get float32.
        probabilities = tf.cast(probabilities, tf.float32)
        top = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "classes": tf.gather(tf.constant(names, dtype=tf.string), top),
            "scores": tf.reduce_max(probabilities, axis=-1),
        }

    def decode_one(item):
        contents, index = item
        message = tf.strings.format(
            "image_bytes[{}] is not a JPEG, PNG, GIF, BMP or WebP image ({} bytes); "
            "send the encoded file's bytes (base64 in JSON requests)",
            (index, tf.strings.length(contents)),
        )
        with tf.control_dependencies([tf.debugging.Assert(_is_supported_image(contents), [message])]):
            image = decode_image(tf.identity(contents))
        return resize_for_eval(image, (height, width), resize)

    def serve_tensor(images):
        return outputs(call_model(model, images))

    def serve_bytes(image_bytes):
        count = tf.shape(image_bytes)[0]
        images = tf.map_fn(
            decode_one, (image_bytes, tf.range(count)),
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
        )
        return serve_tensor(images)

    return serve_bytes, serve_tensor


def write_saved_model(model: keras.Model, path: Path, class_names: Sequence[str],
                      image_size: Sequence[int], assets: Mapping[str, Path] | None = None,
                      *, tensor_only: bool = False, resize: str = DEFAULT_RESIZE) -> None:
    """Write ``model`` as a SavedModel with the two serving signatures and asset files.

    Args:
        model: a Keras model taking float32 RGB 0..255 images, returning probabilities.
        path: the SavedModel directory to create.
        class_names: one name per output unit.
        image_size: ``(height, width)`` the model takes.
        assets: asset name -> file to copy into ``assets/`` (e.g. the recipe, the metrics).
        tensor_only: write only ``serve_tensor`` (as TFLite's source: TFLite has no image decoders).
        resize: how ``serving_default`` resizes decoded images (``resize_for_eval``'s method).
    """
    height, width = (int(s) for s in image_size)
    serve_bytes, serve_tensor = serving_functions(model, (height, width), class_names, resize)
    archive = keras.export.ExportArchive()
    archive.track(model)
    tensor_spec = tf.TensorSpec([None, height, width, 3], tf.float32, name=TENSOR_INPUT)
    if not tensor_only:
        archive.add_endpoint(SERVING_DEFAULT, serve_bytes,
                             [tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    archive.add_endpoint(SERVE_TENSOR, serve_tensor, [tensor_spec])
    with tempfile.TemporaryDirectory() as scratch:
        if not tensor_only:
            labels = Path(scratch) / CLASS_NAMES_ASSET
            labels.write_text("".join(f"{name}\n" for name in class_names))
            files = {"class_names": labels, **(assets or {})}
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
        One dict per image, in order: ``{"image": path, "top": [(label, probability), ...]}``.

    Example:
        >>> predict_saved_model("runs/flowers/export/saved_model", ["rose.jpg"], top_k=1)[0]["top"]
        [('roses', 0.93)]
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
    class_names = labels.read_text().splitlines()
    k = max(1, min(top_k, len(class_names)))
    results = []
    paths = [Path(p) for p in image_paths]
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        contents = []
        for path in batch:
            try:
                contents.append(path.read_bytes())
            except OSError as error:
                raise DataError(f"Cannot read image '{path}': {error.strerror or error}.") from None
        try:
            probabilities = signature(**{BYTES_INPUT: tf.constant(contents)})["probabilities"].numpy()
        except tf.errors.InvalidArgumentError as error:
            raise DataError(_name_bad_image(error.message, batch)) from None
        for path, row in zip(batch, probabilities):
            order = np.argsort(-row)[:k]
            results.append({"image": str(path), "top": [(class_names[i], float(row[i])) for i in order]})
    return results


def _name_bad_image(message: str, batch: Sequence[Path]) -> str:
    import re

    match = re.search(r"image_bytes\[(\d+)\]", message)
    if match:
        return f"'{batch[int(match.group(1))]}' is not a JPEG, PNG, GIF, BMP or WebP image."
    detail = message.strip().splitlines()[-1] if message.strip() else message
    return (f"One of {[str(p) for p in batch]} could not be decoded ({detail}); "
            "check them with `restransfer data check`.")
