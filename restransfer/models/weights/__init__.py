"""Pretrained weights: keras.applications ImageNet files, torchvision/timm state dicts and hub
folders, KerasHub presets, own checkpoints.

``weights_source`` classifies a ``weights=`` value from paths and ``config.json`` alone;
``load_weights`` (in ``load``) puts the tensors into a model. Exported lazily so that
classifying imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "load_weights": "restransfer.models.weights.load",
    "SUPPORTED": "restransfer.models.weights.sources",
    "WeightsSource": "restransfer.models.weights.sources",
    "weights_source": "restransfer.models.weights.sources",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'restransfer.models.weights' has no attribute '{name}'")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = list(_LAZY)
