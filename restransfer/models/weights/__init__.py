"""Pretrained weights: keras.applications ImageNet files, torchvision/timm state dicts and hub
folders, KerasHub presets, own checkpoints.

``weights_source`` classifies a ``weights=`` value from paths and ``config.json`` alone;
``load_weights`` (in ``load``) puts the tensors into a model. Exported lazily so that
classifying imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

from restransfer.lazy import lazy_getattr

_LAZY = {
    "load_weights": "restransfer.models.weights.load",
    "SUPPORTED": "restransfer.models.weights.source",
    "WeightsSource": "restransfer.models.weights.source",
    "weights_source": "restransfer.models.weights.source",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
