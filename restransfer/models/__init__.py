"""Backbones: ResNet, ResNeXt, Wide ResNet, CIFAR ResNets and their plain twins."""

from restransfer.models.heads import classifier, replace_head
from restransfer.models.registry import check_model_name, create_model, list_models
from restransfer.models.stages import freeze_stages, layer_stage, model_stages, resolve_frozen, stage_names

__all__ = [
    "check_model_name",
    "classifier",
    "create_model",
    "freeze_stages",
    "layer_stage",
    "list_models",
    "model_stages",
    "replace_head",
    "resolve_frozen",
    "stage_names",
]
