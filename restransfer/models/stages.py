"""Stages by name: which layers form ``conv1`` ... ``conv5`` and the head; freezing by stage."""

from __future__ import annotations

import re
from collections.abc import Iterable

import keras

from restransfer.errors import ConfigError, did_you_mean

HEAD = "head"
INPUT = "input"
_STAGE = re.compile(r"^(conv\d+)_")
_INPUT_LAYERS = ("image", "preprocess")
# keras.applications' ResNet V2 ends its last stage, conv5, with a norm and ReLU named
# post_bn and post_relu; they belong to conv5, so freezing conv5 freezes them too.
_POST = re.compile(r"^post_")
_POST_STAGE = "conv5"


def layer_stage(name: str) -> str:
    """The stage a layer belongs to, from its name: ``conv3``, ``head`` or ``input``.

    Example:
        >>> layer_stage("conv3_block2_1_conv")
        'conv3'
    """
    match = _STAGE.match(name)
    if match:
        return match.group(1)
    if _POST.match(name):
        return _POST_STAGE
    if name in _INPUT_LAYERS:
        return INPUT
    return HEAD


def model_stages(model: keras.Model) -> dict[str, list[keras.layers.Layer]]:
    """Layers of each stage in network order: ``{"input": [...], "conv1": [...], ..., "head": [...]}``."""
    stages: dict[str, list[keras.layers.Layer]] = {}
    for layer in model.layers:
        stages.setdefault(layer_stage(layer.name), []).append(layer)
    return stages


def stage_names(model: keras.Model) -> list[str]:
    """The freezable stages of a model: ``["conv1", ..., "conv5", "head"]`` (CIFAR: to ``conv4``)."""
    return [s for s in model_stages(model) if s != INPUT]


def backbone_output(model: keras.Model):
    """The output tensor of the last backbone layer, where a classifier head attaches."""
    backbone = [layer for layer in model.layers if layer_stage(layer.name) not in (HEAD, INPUT)]
    if not backbone:
        raise ConfigError(
            f"Model '{model.name}' has no layers named after stages (conv1_..., conv2_...); "
            "build it with restransfer.create_model."
        )
    return backbone[-1].output


def resolve_frozen(model: keras.Model, freeze: str | Iterable[str] | None = None,
                   freeze_until: str | None = None) -> list[str]:
    """Turn ``freeze`` / ``freeze_until`` into the list of stages to freeze.

    Args:
        freeze: ``"none"``, ``"all_but_head"``, ``"all"`` or a list of stage names.
        freeze_until: freeze every stage before this one (``"conv3"`` freezes conv1 and conv2).
    """
    names = stage_names(model)
    if freeze is not None and freeze_until is not None:
        raise ConfigError("Give either freeze or freeze_until, not both.")
    if freeze_until is not None:
        _check_stage(freeze_until, names, "freeze_until")
        return names[: names.index(freeze_until)]
    if freeze is None or freeze == "none":
        return []
    if freeze == "all":
        return list(names)
    if freeze == "all_but_head":
        return [s for s in names if s != HEAD]
    if isinstance(freeze, str):
        freeze = [freeze]
    for stage in freeze:
        _check_stage(stage, names, "freeze")
    return [s for s in names if s in set(freeze)]


def _check_stage(stage: str, names: list[str], key: str) -> None:
    if stage not in names:
        raise ConfigError(
            f"{key} names stage '{stage}', which model has not. Stages: {names}."
            + did_you_mean(stage, names)
        )


def freeze_stages(model: keras.Model, frozen: Iterable[str]) -> None:
    """Set ``trainable`` per stage. Frozen BatchNorm layers then run in inference mode.

    A change of ``trainable`` after ``compile()`` takes effect only after compiling again.
    """
    frozen = set(frozen)
    unknown = frozen - set(stage_names(model))
    if unknown:
        raise ConfigError(f"Cannot freeze unknown stages {sorted(unknown)}; stages: {stage_names(model)}.")
    for layer in model.layers:
        stage = layer_stage(layer.name)
        if stage != INPUT:
            layer.trainable = stage not in frozen
