"""Which network a weights file was saved from, read off its tensor names and shapes.

Used for two things: refusing a timm/Hugging Face hub folder whose ``architecture`` computes
another network than the model (the anti-aliased ResNets have exactly the plain ones' tensors),
and telling a user whose bare file does not fit what the file looks like and which model name
loads it. Nothing here builds a model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from restransfer.errors import WeightsError
from restransfer.models.specs import BOTTLENECK, SPECS
from restransfer.models.weights.torch_names import has_avg_down, strip_prefix

# timm models whose tensors are exactly those of one of ours but which compute another network:
# the anti-aliasing layers (a blur filter, an average pool) hold no weights.
_TENSOR_TWINS = (
    (re.compile(r"^resnetaa(\d+)$"), "anti-aliased downsampling (a 2x2 average pool before each strided conv)"),
    (re.compile(r"^resnetblur(\d+)$"), "anti-aliased downsampling (a fixed blur filter before each strided conv)"),
)
_BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.")
_KERAS_BLOCK = re.compile(r"^conv(\d+)_block(\d+)_")


@dataclass(frozen=True)
class Layout:
    """What a weights file's names and shapes reveal about its network."""

    block: str
    repeats: tuple[int, ...]
    groups: int = 1
    width_per_group: int = 64
    deep_stem: bool = False
    avg_down: bool = False
    se: bool = False
    preact: bool = False
    evidence: tuple[str, ...] = ()

    @property
    def depth(self) -> int:
        return sum(self.repeats) * (3 if self.block == BOTTLENECK else 2) + 2

    def describe(self) -> str:
        family = "ResNeXt" if self.groups > 1 else "ResNet"
        width = f" {self.groups}x{self.width_per_group}d" if self.groups > 1 else ""
        traits = [
            ("a deep 3x3 stem", self.deep_stem), ("average-pool shortcuts", self.avg_down),
            ("squeeze-excitation", self.se), ("pre-activation (V2) blocks", self.preact),
        ]
        shown = [text for text, present in traits if present]
        return f"a {family}-{self.depth}{width}" + (" with " + " and ".join(shown) if shown else "")

    def model_names(self, style: str) -> list[str]:
        """restransfer's models with exactly this layout in ``style``."""
        return sorted(
            name for name, spec in SPECS.items()
            if spec.residual and spec.stem != "cifar" and style in spec.styles
            and (spec.block, spec.repeats, spec.groups, spec.width_per_group) ==
            (self.block, self.repeats, self.groups, self.width_per_group)
            and (spec.stem == "deep", spec.avg_down, spec.se, spec.preact) ==
            (self.deep_stem, self.avg_down, self.se, self.preact)
        )


def _repeats(blocks: set[tuple[int, int]], first: int) -> tuple[int, ...]:
    """Blocks per stage from ``(stage, block index)`` pairs whose indices start at ``first``."""
    stages = sorted({stage for stage, _ in blocks})
    return tuple(1 - first + max(b for s, b in blocks if s == stage) for stage in stages)


def state_dict_layout(shapes: Mapping[str, tuple]) -> Layout | None:
    """The layout of a torchvision/timm ResNet state dict (``{key: shape}``, PyTorch layout)."""
    keys = {strip_prefix(k): tuple(v) for k, v in shapes.items()}
    blocks = {(int(m.group(1)), int(m.group(2))) for k in keys if (m := _BLOCK_KEY.match(k))}
    if not blocks:
        return None
    bottleneck = any(k.endswith(".conv3.weight") for k in keys)
    groups, width_per_group = 1, 64
    first = keys.get("layer1.0.conv2.weight")
    if bottleneck and first and len(first) == 4 and first[1]:
        groups = max(first[0] // first[1], 1)
        width_per_group = first[0] // groups
    evidence = []
    deep_stem = "conv1.0.weight" in keys
    avg_down = has_avg_down(keys)
    se = any(".se." in k for k in keys)
    if deep_stem:
        evidence.append("'conv1.0.weight'")
    if avg_down:
        evidence.append(next(f"'{k}'" for k in sorted(keys) if ".downsample.2." in k))
    if se:
        evidence.append(next(f"'{k}'" for k in sorted(keys) if ".se." in k))
    return Layout("bottleneck" if bottleneck else "basic", _repeats(blocks, 0), groups, width_per_group,
                  deep_stem, avg_down, se, False, tuple(evidence))


def keras_layout(shapes: Mapping[str, tuple]) -> Layout | None:
    """The layout of weights under our (keras.applications) layer names."""
    blocks = {(int(m.group(1)), int(m.group(2))) for k in shapes if (m := _KERAS_BLOCK.match(k))}
    if not blocks:
        return None
    preact = any("_preact_bn/" in k for k in shapes)
    evidence = (next(f"'{k.split('/')[0]}'" for k in sorted(shapes) if "_preact_bn/" in k),) if preact else ()
    bottleneck = any(re.search(r"_block\d+_3_conv/", k) for k in shapes)
    return Layout("bottleneck" if bottleneck else "basic", _repeats(blocks, 1), preact=preact, evidence=evidence)


def near_miss_hint(layout: Layout | None, model_name: str, style: str) -> str:
    """A sentence for a failed load: what the file looks like and the model that would take it."""
    if layout is None:
        return ""
    names = layout.model_names(style)
    if model_name in names:
        return ""  # the right family; the tensor list above says what is off
    seen = f" ({', '.join(layout.evidence)})" if layout.evidence else ""
    hint = f" The file looks like {layout.describe()}{seen}, which '{model_name}' is not."
    if names:
        return hint + f" Load it with create_model('{names[0]}', ...)."
    return hint + " restransfer has no model of that layout."


def check_hub_architecture(architecture: str, model_name: str, source: str) -> None:
    """Refuse a hub folder saved from another architecture than ``model_name``.

    timm's ``architecture`` names match ours for every network both have; a name of ours
    is the one to use, any other is refused, the tensor twins (anti-aliased ResNets) with why.
    """
    arch = architecture.split(".", 1)[0]
    if arch == model_name:
        return
    for pattern, what in _TENSOR_TWINS:
        if match := pattern.match(arch):
            twin = f"resnet{match.group(1)}"
            raise WeightsError(
                f"{source} holds timm's '{arch}': {what}. Its tensors have exactly the names and shapes "
                f"of {twin}'s, but its blur/pool layers hold no weights and change what the network "
                f"computes, so loading it into '{model_name}' would silently give another network. "
                "restransfer has no anti-aliased ResNet; use a folder of a plain timm model (e.g. "
                f"timm/{twin}.a1_in1k) instead."
            )
    if arch in SPECS:
        raise WeightsError(
            f"{source} holds timm's '{arch}', not '{model_name}'. Build create_model('{arch}', ...) to load it."
        )
    raise WeightsError(
        f"{source} holds timm's '{arch}', which restransfer does not build ('{model_name}' computes "
        "another network). See `restransfer models list` for the networks whose timm folders load."
    )
