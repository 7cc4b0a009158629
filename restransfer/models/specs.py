"""Variant tables: every named network is a row of data for one builder."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

BASIC = "basic"
BOTTLENECK = "bottleneck"


@dataclass(frozen=True)
class ResNetSpec:
    """The architecture of one ResNet family member.

    Attributes:
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1, 3x3, 1x1).
        repeats: blocks per stage; stage ``i`` is named ``conv{i + 2}``.
        widths: the base width of each stage (block output is ``width * expansion``).
        stem: ``"imagenet"`` (7x7/2 conv and 3x3/2 max pool) or ``"cifar"`` (3x3/1 conv).
        groups: cardinality of the grouped 3x3 convolution (ResNeXt).
        width_per_group: channels per group at base width 64 (ResNeXt ``d``, Wide ResNet ``128``).
        shortcut: ``"B"`` projects when the shape changes, ``"A"`` pads the identity with zeros
            (CIFAR option A of He et al. 2015, section 4.2).
        residual: ``False`` builds the "plain" twin: the same layers without shortcuts.
    """

    block: str
    repeats: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: str = "imagenet"
    groups: int = 1
    width_per_group: int = 64
    shortcut: str = "B"
    residual: bool = True
    default_size: int = 224
    default_classes: int = 1000
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def expansion(self) -> int:
        return 4 if self.block == BOTTLENECK else 1

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(f"conv{i + 1}" for i in range(len(self.repeats) + 1))

    def plain(self) -> "ResNetSpec":
        return replace(self, residual=False)


def _imagenet(block: str, repeats, **kw) -> ResNetSpec:
    return ResNetSpec(block=block, repeats=tuple(repeats), **kw)


def _cifar(n: int) -> ResNetSpec:
    # 6n + 2 layers: three stages of n basic blocks at 16/32/64 filters.
    return ResNetSpec(
        block=BASIC,
        repeats=(n, n, n),
        widths=(16, 32, 64),
        stem="cifar",
        shortcut="A",
        default_size=32,
        default_classes=10,
    )


SPECS: dict[str, ResNetSpec] = {
    "resnet18": _imagenet(BASIC, (2, 2, 2, 2)),
    "resnet34": _imagenet(BASIC, (3, 4, 6, 3)),
    "resnet50": _imagenet(BOTTLENECK, (3, 4, 6, 3)),
    "resnet101": _imagenet(BOTTLENECK, (3, 4, 23, 3)),
    "resnet152": _imagenet(BOTTLENECK, (3, 8, 36, 3)),
    "resnext50_32x4d": _imagenet(BOTTLENECK, (3, 4, 6, 3), groups=32, width_per_group=4),
    "resnext101_32x8d": _imagenet(BOTTLENECK, (3, 4, 23, 3), groups=32, width_per_group=8),
    "resnext101_64x4d": _imagenet(BOTTLENECK, (3, 4, 23, 3), groups=64, width_per_group=4),
    "wide_resnet50_2": _imagenet(BOTTLENECK, (3, 4, 6, 3), width_per_group=128),
    "wide_resnet101_2": _imagenet(BOTTLENECK, (3, 4, 23, 3), width_per_group=128),
    **{f"cifar_resnet{6 * n + 2}": _cifar(n) for n in (3, 5, 7, 9, 18)},
}
SPECS.update({f"plain_{name}": spec.plain() for name, spec in list(SPECS.items())})
