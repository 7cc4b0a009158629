"""TFLite export: float32, plus an optional float16 or dynamic-range quantised copy.

TFLite has no image decoders, so the TFLite model is converted from the ``serve_tensor``
signature: ``images`` (float32 ``[batch, height, width, 3]``, RGB 0..255) -> ``probabilities``,
``classes``, ``scores``. Decode and resize on the device the way ``resize_for_eval`` does with
the method ``export.json`` records under ``resize`` (``area``: box-filter shrinking, bilinear
enlarging; ``bilinear``: plain bilinear), whole image, no crop. Class names are also in
``labels.txt``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from restransfer.export.artifact import ExportError
from restransfer.export.saved_model import SERVE_TENSOR, write_saved_model

LABELS_FILE = "labels.txt"


def tflite_files(quantize: str | None) -> dict[str, str]:
    """Artifact file name -> numeric precision, for the files a TFLite export writes."""
    files = {"model.tflite": "float32"}
    if quantize:
        files[f"model.{quantize}.tflite"] = quantize
    return files


def convert(saved_model_dir: Path, precision: str, representative: np.ndarray | None = None) -> bytes:
    """TFLite bytes of the SavedModel's ``serve_tensor`` signature at ``precision``.

    ``"int8"``: full-integer, calibrated on ``representative`` images; the input is uint8 RGB
    0..255 (exactly the pixel values, so no input scaling), the probabilities stay float32, and
    the label lookup (strings, which integer kernels do not have) runs as a float builtin.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[SERVE_TENSOR])
    if precision != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        def batches():
            for image in representative:
                yield {"images": image[None].astype(np.float32)}

        converter.representative_dataset = batches
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.inference_input_type = tf.uint8
    try:
        return converter.convert()
    except Exception as error:  # the converter raises its own ConverterError and plain exceptions
        raise ExportError(f"TFLite conversion ({precision}) failed: {str(error).strip()[:500]}") from None


def write_tflite(model: keras.Model, directory: Path, class_names: Sequence[str], image_size: Sequence[int],
                 quantize: str | None = None, representative: np.ndarray | None = None) -> list[str]:
    """Write ``model.tflite`` (and ``model.<quantize>.tflite``) and ``labels.txt`` into ``directory``."""
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "saved_model"
        write_saved_model(model, source, class_names, image_size, tensor_only=True)
        for name, precision in tflite_files(quantize).items():
            (directory / name).write_bytes(convert(source, precision, representative))
    (directory / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names))
    return [*tflite_files(quantize), LABELS_FILE]
