"""Backbones: ResNet, ResNeXt, Wide ResNet, ResNet-D, SE-ResNe(X)t, ResNet V2, CIFAR ResNets and
their plain twins.

Exported lazily: the variant tables (``specs``) and weight classification
(``weights.source``) import without Keras, so recipe validation can use them cheaply.
"""

from __future__ import annotations

from restransfer.lazy import lazy_getattr

_LAZY = {
    "check_model_name": "restransfer.models.registry",
    "create_model": "restransfer.models.registry",
    "list_models": "restransfer.models.registry",
    "classifier": "restransfer.models.heads",
    "replace_head": "restransfer.models.heads",
    "freeze_stages": "restransfer.models.stages",
    "layer_stage": "restransfer.models.stages",
    "model_stages": "restransfer.models.stages",
    "resolve_frozen": "restransfer.models.stages",
    "stage_names": "restransfer.models.stages",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = sorted(_LAZY)
