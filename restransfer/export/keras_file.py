"""Portable ``.keras`` export: the same network built from Keras' own layers only.

A run's ``model.keras`` holds restransfer's custom layers, so loading it needs restransfer.
The exported file replaces each of them by built-in layers that compute the same function at
inference, so ``keras.saving.load_model(path)`` (safe mode on) works in any Keras 3 install:

- ``Preprocess``: ``Normalization`` (torch), ``Rescaling`` (tf), a fixed 1x1 ``Conv2D`` that
  reverses the channels and subtracts the mean (caffe: x*1 + 0 + 0 is exact), ``Identity``;
- ``ZeroPadShortcut``: a fixed, frozen 1x1 strided ``Conv2D`` whose kernel places input channel
  ``i`` at output channel ``pad + i`` (subsampling and zero padding, exactly);
- ``DropPath``: ``Identity`` (stochastic depth does nothing at inference);
- ``GroupedConv2D``: ``Conv2D`` with the same ``groups`` and weights (it only changes how the
  convolution runs on CPU).
All other layers are shared with the source model, weights included.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from restransfer.export.artifact import ExportError
from restransfer.models.layers import (
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DropPath,
    GroupedConv2D,
    Preprocess,
    ZeroPadShortcut,
)

MODEL_FILE = "model.keras"


def _fixed_conv(layer, kernel: np.ndarray, bias: np.ndarray | None, stride: int = 1, dtype=None):
    conv = keras.layers.Conv2D(kernel.shape[-1], 1, strides=stride, use_bias=bias is not None,
                               trainable=False, name=layer.name, dtype=dtype or layer.dtype_policy)
    return conv, [kernel] + ([bias] if bias is not None else [])


def _replacement(layer, channels_in: int):
    """(built-in layer, weights to set after it is built or None) standing in for ``layer``."""
    if isinstance(layer, DropPath):
        return keras.layers.Identity(name=layer.name), None
    if isinstance(layer, GroupedConv2D):
        return keras.layers.Conv2D.from_config(layer.get_config()), layer.get_weights()
    if isinstance(layer, Preprocess):
        if layer.mode == "torch":
            return keras.layers.Normalization(mean=list(IMAGENET_MEAN), variance=[s * s for s in IMAGENET_STD],
                                              name=layer.name, dtype="float32"), None
        if layer.mode == "tf":
            return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=layer.name, dtype="float32"), None
        if layer.mode == "caffe":
            kernel = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)
            return _fixed_conv(layer, kernel, -np.asarray(CAFFE_MEAN_BGR, "float32"), dtype="float32")
        return keras.layers.Identity(name=layer.name, dtype="float32"), None
    if isinstance(layer, ZeroPadShortcut):
        extra = layer.filters - channels_in
        kernel = np.zeros((1, 1, channels_in, layer.filters), "float32")
        kernel[0, 0, np.arange(channels_in), extra // 2 + np.arange(channels_in)] = 1.0
        return _fixed_conv(layer, kernel, None, stride=layer.stride)
    return layer, None


def portable_model(model: keras.Model) -> keras.Model:
    """A model computing ``model``'s inference function with Keras' built-in layers only.

    Example:
        >>> portable = portable_model(run_model)
        >>> portable.save("model.keras")  # loads without restransfer installed
    """
    pending = []

    def clone(layer):
        channels_in = layer.input.shape[-1] if isinstance(layer, ZeroPadShortcut) else None
        new, weights = _replacement(layer, channels_in)
        if weights is not None:
            pending.append((new, weights))
        return new

    try:
        portable = keras.models.clone_model(model, clone_function=clone)
    except ValueError as error:
        raise ExportError(f"Model '{model.name}' cannot be rebuilt for export: {error}") from None
    for layer, weights in pending:
        layer.set_weights(weights)
    if len(portable.inputs) == 1 and len(portable.outputs) == 1:
        # One tensor in, one out: users call model(images), not model([images]).
        portable = keras.Model(portable.inputs[0], portable.outputs[0], name=model.name)
    custom = sorted({type(layer).__name__ for layer in portable.layers
                     if not type(layer).__module__.startswith("keras.")})
    if custom:
        raise ExportError(
            f"Model '{model.name}' has layers without a built-in Keras equivalent: {custom}. "
            "Export it as a SavedModel instead (--format saved_model)."
        )
    return portable


def write_keras(model: keras.Model, directory: Path) -> str:
    """Save the portable model as ``directory/model.keras``; returns the file name."""
    portable_model(model).save(directory / MODEL_FILE)
    return MODEL_FILE
