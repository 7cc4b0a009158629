"""KerasHub ResNet preset folders (``config.json`` + ``model.weights.h5`` from ``save_to_preset``).

KerasHub's ``ResNetBackbone`` is torchvision's ResNet v1.5 for ``block_type="basic_block"``
and ``"bottleneck_block"`` (no conv biases, BatchNorm epsilon 1e-5, stride on the 3x3), and
timm's ResNet-D for ``"bottleneck_block_vd"`` (deep stem, average-pool shortcut); those load
into restransfer's ``resnet18`` ... ``resnet152`` and ``resnet50d`` ... ``resnet152d``.
Two of its layouts have no counterpart here and are refused with the reason:
``"basic_block_vd"`` projects the first block's shortcut even where the channels do not change
(PaddleClas' ResNet-vd, unlike timm's resnet18d/34d), and ``use_pre_activation=True`` is timm's
ResNetV2 (stride in the first block, no conv biases, max pool padded with -inf), not
keras.applications' ResNet V2 that restransfer builds.

Keras 3 stores a ``.weights.h5`` by layer position, not by name, so the weights are read
through KerasHub itself (``Backbone.from_preset`` on the local folder, in Keras' safe mode)
and then renamed layer by layer; the class in ``config.json`` is checked first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from restransfer.errors import WeightsError

BACKBONE = "ResNetBackbone"
WEIGHTS_FILE = "model.weights.h5"
_STANDARD = {
    ("basic_block", (2, 2, 2, 2)): "resnet18",
    ("basic_block", (3, 4, 6, 3)): "resnet34",
    ("bottleneck_block", (3, 4, 6, 3)): "resnet50",
    ("bottleneck_block", (3, 4, 23, 3)): "resnet101",
    ("bottleneck_block", (3, 8, 36, 3)): "resnet152",
    ("bottleneck_block_vd", (3, 4, 6, 3)): "resnet50d",
    ("bottleneck_block_vd", (3, 4, 23, 3)): "resnet101d",
    ("bottleneck_block_vd", (3, 8, 36, 3)): "resnet152d",
}
_STEMS = {"basic_block": ([64], [7]), "bottleneck_block": ([64], [7]), "bottleneck_block_vd": ([32, 32, 64], [3, 3, 3])}
_BLOCK = re.compile(r"^stack(\d+)_block(\d+)_(.+)$")
_STEM = re.compile(r"^conv(\d+)_(conv|bn)$")


def is_keras_hub_config(config: Mapping) -> bool:
    """Whether a parsed ``config.json`` was written by KerasHub (a serialised KerasHub class)."""
    registered = str(config.get("registered_name") or "")
    return registered.startswith("keras_hub>") or str(config.get("module") or "").startswith("keras_hub")


def model_name(config: Mapping, source: str) -> str:
    """The restransfer model a KerasHub ResNet backbone config equals, or a WeightsError saying why none."""
    class_name = config.get("class_name")
    if class_name != BACKBONE:
        raise WeightsError(
            f"{source} is a KerasHub preset of {class_name!r}; only {BACKBONE} presets (KerasHub's ResNets) "
            "load into restransfer models."
        )
    cfg = config.get("config") or {}
    block_type = cfg.get("block_type")
    blocks = tuple(cfg.get("stackwise_num_blocks") or ())
    if cfg.get("use_pre_activation"):
        raise WeightsError(
            f"{source} is a KerasHub ResNetV2 preset (use_pre_activation=True): timm's ResNetV2 layout "
            "(stride in each stage's first block, no conv biases, max pool padded with -inf), which "
            "computes another network than keras.applications' ResNet50V2 that restransfer builds as "
            "'resnet50v2'. restransfer has no model for it."
        )
    if block_type == "basic_block_vd":
        raise WeightsError(
            f"{source} is a KerasHub ResNet-vd preset with basic blocks: its first block projects the "
            "shortcut with a 1x1 conv although the channels do not change (PaddleClas' layout), which "
            "timm's resnet18d/resnet34d and restransfer's do not. restransfer has no model for it."
        )
    name = _STANDARD.get((block_type, blocks))
    filters, kernels = _STEMS.get(block_type, (None, None))
    regular = (
        list(cfg.get("stackwise_num_filters") or ()) == [64, 128, 256, 512]
        and list(cfg.get("stackwise_num_strides") or ()) == [1, 2, 2, 2]
        and list(cfg.get("input_conv_filters") or ()) == filters
        and list(cfg.get("input_conv_kernel_sizes") or ()) == kernels
    )
    if name is None or not regular:
        raise WeightsError(
            f"{source} is a KerasHub ResNetBackbone (block_type={block_type!r}, "
            f"stackwise_num_blocks={list(blocks)}) with no restransfer counterpart; presets of "
            f"{sorted(set(_STANDARD.values()))} load."
        )
    return name


def layer_name(keras_hub_name: str, stem_convs: int) -> str | None:
    """Our layer for a KerasHub ResNetBackbone layer: ``stack0_block0_1_conv`` -> ``conv2_block1_1_conv``.

    The stem's convs are ``conv1_conv`` ... ``conv{n}_conv``; with a deep stem (n = 3) they are
    our ``conv1_1_conv`` ... ``conv1_3_conv``, and the last norm is the stem's ``conv1_bn``.
    """
    if match := _BLOCK.match(keras_hub_name):
        stack, block, rest = match.groups()
        return f"conv{int(stack) + 2}_block{int(block) + 1}_{rest}"
    if match := _STEM.match(keras_hub_name):
        index, kind = int(match.group(1)), match.group(2)
        if stem_convs == 1:
            return f"conv1_{kind}"
        if kind == "bn" and index == stem_convs:
            return "conv1_bn"
        return f"conv1_{index}_{kind}"
    return None


def read_preset(path: Path, config: Mapping) -> dict[str, np.ndarray]:
    """The backbone's weights under our layer names (``{"layer/variable": array}``)."""
    try:
        import keras_hub
    except ImportError:
        raise WeightsError(
            f"Reading the KerasHub preset {path} needs KerasHub: `pip install keras-hub`. Keras 3 stores "
            "model.weights.h5 by layer position, so only KerasHub can tell which tensor is which."
        ) from None
    import keras

    try:
        backbone = keras_hub.models.Backbone.from_preset(str(path), load_weights=True)
    except Exception as error:  # KerasHub raises ValueError, OSError, h5py errors ...
        raise WeightsError(f"KerasHub cannot load the preset {path}: {str(error).splitlines()[0]}") from None
    stem_convs = len((config.get("config") or {}).get("input_conv_filters") or [1])
    tensors: dict[str, np.ndarray] = {}
    for layer in backbone.layers:
        for weight in layer.weights:
            ours = layer_name(layer.name, stem_convs)
            key = f"{ours or layer.name}/{weight.name}"
            tensors[key] = np.asarray(keras.ops.convert_to_numpy(weight))
    return tensors
