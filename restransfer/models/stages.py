"""Stages by name: which layers form ``conv1`` ... ``conv5`` and the head; freezing by stage."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import keras

from restransfer.errors import ConfigError, OptionError, did_you_mean

HEAD = "head"
# Keywords of ``freeze``; anything else names stages.
FREEZE_KEYWORDS = ("none", "all_but_head", "all")
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


def resolve_frozen(stages: Sequence[str], freeze: str | Iterable[str] | None = None,
                   freeze_until: str | None = None) -> list[str]:
    """Turn ``freeze`` / ``freeze_until`` into the list of stages to freeze, in network order.

    The one place freezing is resolved: a recipe's Plan feeds it the stage names of the model
    spec (before any build), a notebook those of a built model (``stage_names(model)``).

    Args:
        stages: the model's freezable stages, ``["conv1", ..., "conv5", "head"]``.
        freeze: ``"none"``, ``"all_but_head"``, ``"all"``, a stage name or a list of them.
        freeze_until: freeze every stage before this one (``"conv3"`` freezes conv1 and conv2).

    Raises:
        OptionError: an unknown keyword or stage (``key`` is ``freeze`` or ``freeze_until``).

    Example:
        >>> resolve_frozen(["conv1", "conv2", "conv3", "head"], freeze_until="conv3")
        ['conv1', 'conv2']
    """
    names = list(stages)
    if freeze is not None and freeze_until is not None:
        raise OptionError("freeze", f"give freeze or freeze_until, not both (received freeze={freeze!r}, "
                                    f"freeze_until={freeze_until!r}).")
    if freeze_until is not None:
        _check_stage(freeze_until, names, "freeze_until")
        return names[: names.index(freeze_until)]
    if freeze is None or freeze == "none":
        return []
    if freeze == "all":
        return names
    if freeze == "all_but_head":
        return [s for s in names if s != HEAD]
    if isinstance(freeze, str):
        _check_stage(freeze, names, "freeze", keywords=True)
        freeze = [freeze]
    freeze = list(freeze)
    for index, stage in enumerate(freeze):
        if not isinstance(stage, str):
            raise OptionError(f"freeze[{index}]", f"must be a stage name; received {stage!r}.")
        _check_stage(stage, names, f"freeze[{index}]")
    return [s for s in names if s in set(freeze)]


def _check_stage(stage: str, names: list[str], key: str, *, keywords: bool = False) -> None:
    if stage not in names:
        allowed = [*FREEZE_KEYWORDS, *names] if keywords else names
        raise OptionError(key, f"'{stage}' is not a stage of this model; allowed: {', '.join(allowed)}."
                               + did_you_mean(stage, allowed))


def freeze_stages(model: keras.Model, frozen: str | Iterable[str]) -> None:
    """Set ``trainable`` per stage. Frozen BatchNorm layers then run in inference mode.

    A change of ``trainable`` after ``compile()`` takes effect only after compiling again.

    Args:
        model: a model with layers named by stage (``restransfer.create_model``).
        frozen: as a recipe's ``freeze`` (`resolve_frozen`): ``"all_but_head"``, ``"conv1"``,
            ``["conv1", "conv2"]``, ...

    Raises:
        OptionError: an unknown keyword or stage.

    Example:
        >>> freeze_stages(model, "all_but_head")   # only the head trains
    """
    frozen = set(resolve_frozen(stage_names(model), frozen))
    for layer in model.layers:
        stage = layer_stage(layer.name)
        if stage != INPUT:
            layer.trainable = stage not in frozen
