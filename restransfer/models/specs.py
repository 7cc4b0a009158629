"""Variant tables: every named network is a row of data for one builder."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

BASIC = "basic"
BOTTLENECK = "bottleneck"
STEMS = ("imagenet", "deep", "cifar")


@dataclass(frozen=True)
class ResNetSpec:
    """The architecture of one ResNet family member.

    Attributes:
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1, 3x3, 1x1).
        repeats: blocks per stage; stage ``i`` is named ``conv{i + 2}``.
        widths: the base width of each stage (block output is ``width * expansion``).
        stem: ``"imagenet"`` (7x7/2 conv and 3x3/2 max pool), ``"deep"`` (three 3x3 convs of
            32, 32 and 64 filters, the first with stride 2, then the max pool: ResNet-C/D of He
            et al. 2019, "Bag of Tricks") or ``"cifar"`` (3x3/1 conv).
        groups: cardinality of the grouped 3x3 convolution (ResNeXt).
        width_per_group: channels per group at base width 64 (ResNeXt ``d``, Wide ResNet ``128``).
        shortcut: ``"B"`` projects when the shape changes, ``"A"`` pads the identity with zeros
            (CIFAR option A of He et al. 2015, section 4.2).
        residual: ``False`` builds the "plain" twin: the same layers without shortcuts.
        avg_down: the projection shortcut averages 2x2 before a stride-1 1x1 conv instead of
            striding the 1x1 conv, which skips 3/4 of the input (ResNet-D).
        se: squeeze-and-excitation after the last norm of each residual branch (Hu et al. 2018),
            reduction 16 rounded to a multiple of 8, as timm's ``SEModule``.
        preact: pre-activation blocks (ResNet V2, He et al. 2016): norm and ReLU before each
            conv, no norm after the stem, one norm and ReLU after the last stage.
        stride_last: the stage's stride sits in its last block instead of its first
            (keras.applications' ResNet V2); the stages then stride at their ends.
        styles: the styles with published weights for this architecture; the first is the
            default. D and SE exist in timm's (torchvision) style, V2 in keras.applications'.
        preprocessing: what ``preprocessing="auto"`` means when it is not the style's own
            (keras.applications' V2 weights take pixels scaled to [-1, 1], ``"tf"``).
    """

    block: str
    repeats: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: str = "imagenet"
    groups: int = 1
    width_per_group: int = 64
    shortcut: str = "B"
    residual: bool = True
    avg_down: bool = False
    se: bool = False
    preact: bool = False
    stride_last: bool = False
    styles: tuple[str, ...] = ("torchvision", "keras")
    preprocessing: str | None = None
    default_size: int = 224
    default_classes: int = 1000
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def expansion(self) -> int:
        return 4 if self.block == BOTTLENECK else 1

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(f"conv{i + 1}" for i in range(len(self.repeats) + 1))

    def plain(self) -> ResNetSpec:
        return replace(self, residual=False)


def _imagenet(block: str, repeats, **kw) -> ResNetSpec:
    return ResNetSpec(block=block, repeats=tuple(repeats), **kw)


def _resnet_d(block: str, repeats, **kw) -> ResNetSpec:
    # timm's "d" models: deep stem (stem_width 32) and average-pool shortcut (avg_down).
    return _imagenet(block, repeats, stem="deep", avg_down=True, styles=("torchvision",), **kw)


def _se(repeats, **kw) -> ResNetSpec:
    return _imagenet(BOTTLENECK, repeats, se=True, styles=("torchvision",), **kw)


def _v2(repeats) -> ResNetSpec:
    return _imagenet(BOTTLENECK, repeats, preact=True, stride_last=True, styles=("keras",), preprocessing="tf")


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
# The variants with published weights only: their plain twins would be nobody's baseline.
SPECS.update({
    "resnet18d": _resnet_d(BASIC, (2, 2, 2, 2)),
    "resnet34d": _resnet_d(BASIC, (3, 4, 6, 3)),
    "resnet50d": _resnet_d(BOTTLENECK, (3, 4, 6, 3)),
    "resnet101d": _resnet_d(BOTTLENECK, (3, 4, 23, 3)),
    "resnet152d": _resnet_d(BOTTLENECK, (3, 8, 36, 3)),
    "resnext50d_32x4d": _resnet_d(BOTTLENECK, (3, 4, 6, 3), groups=32, width_per_group=4),
    "seresnet50": _se((3, 4, 6, 3)),
    "seresnext50_32x4d": _se((3, 4, 6, 3), groups=32, width_per_group=4),
    "seresnext101_32x4d": _se((3, 4, 23, 3), groups=32, width_per_group=4),
    "resnet50v2": _v2((3, 4, 6, 3)),
    "resnet101v2": _v2((3, 4, 23, 3)),
    "resnet152v2": _v2((3, 8, 36, 3)),
})
