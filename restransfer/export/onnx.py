"""ONNX export through Keras' own ``model.export(format="onnx")`` (tf2onnx beneath it).

The graph takes ``images`` (float32 ``[batch, height, width, 3]``, RGB 0..255, as the run's
``model.keras`` does) and returns ``probabilities``. Keras converts with tf2onnx on the
TensorFlow backend; its JAX path needs jax2onnx and a newer opset, so restransfer exports ONNX
from TensorFlow only, at ``OPSET``, which ONNX Runtime, Triton and TensorRT all read.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np

from restransfer.export.artifact import ExportError, call_model

ONNX_FILE = "model.onnx"
OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def write_onnx(model: keras.Model, directory: Path, image_size) -> tuple[list[str], dict]:
    """Write ``model.onnx`` into ``directory``; returns its file names and ``{"opset", "inputs", "outputs"}``."""
    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"ONNX export runs on the TensorFlow backend (Keras converts with tf2onnx there); "
                          f"this process uses '{keras.backend.backend()}'. Run it with "
                          "KERAS_BACKEND=tensorflow.")
    try:
        import onnx
        import tf2onnx  # noqa: F401  (Keras imports it lazily; fail here with the fix)
    except ImportError:
        raise ExportError("ONNX export needs the onnx extra: pip install 'restransfer[onnx]'.") from None
    # Keras exports only models that have been called once.
    call_model(model, np.zeros((1, *image_size, 3), "float32"))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / ONNX_FILE
        try:
            model.export(str(path), format="onnx", verbose=False, opset_version=OPSET)
        except Exception as error:  # tf2onnx raises plain exceptions of many kinds
            raise ExportError(f"ONNX conversion failed: {str(error).strip()[:500]}") from None
        graph = onnx.load(str(path))
    _rename(graph.graph, graph.graph.input[0].name, INPUT_NAME)
    _rename(graph.graph, graph.graph.output[0].name, OUTPUT_NAME)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(directory / ONNX_FILE))
    info = {"opset": next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
            "inputs": [i.name for i in graph.graph.input], "outputs": [o.name for o in graph.graph.output]}
    return [ONNX_FILE], info


def _rename(graph, old: str, new: str) -> None:
    """Give a graph input or output a stable name, so serving code need not look it up."""
    if old == new:
        return
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
