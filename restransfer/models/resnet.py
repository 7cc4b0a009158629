"""One functional builder for every ResNet, ResNeXt, Wide ResNet, ResNet-D, SE-ResNe(X)t, ResNet V2,
CIFAR ResNet and plain twin."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from restransfer.errors import OptionError
from restransfer.models import heads
from restransfer.models.blocks import BLOCKS, NORMS, PREACT_BLOCKS, STYLES, BlockOptions, conv, norm_groups_for, relu
from restransfer.models.blocks import norm as normalize  # build_resnet has an argument "norm"
from restransfer.models.layers import PREPROCESSING_MODES, Preprocess
from restransfer.models.specs import ResNetSpec

POOLINGS = (None, "avg", "max")
SHORTCUTS = (None, "A", "B")
OUTPUT_STRIDES = (8, 16, 32)
# The preprocessing that each style's published weights were trained with.
STYLE_PREPROCESSING = {"torchvision": "torch", "keras": "caffe"}


def _check_choice(key: str, value, allowed: Sequence) -> None:
    if value not in allowed:
        raise OptionError(key, f"{key} must be one of {list(allowed)}. Received {key}={value!r}.")


def _check_input_shape(input_shape, spec: ResNetSpec) -> tuple:
    if input_shape is None:
        return (spec.default_size, spec.default_size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise OptionError(
            "input_shape", f"input_shape must be (height, width, 3) with RGB channels last. Received input_shape={input_shape}."
        )
    # The last stage must see at least one pixel: 32 for ImageNet stems, 4 for CIFAR ResNets.
    least = (1 if spec.stem == "cifar" else 4) * 2 ** (len(spec.repeats) - 1)
    for dim in input_shape[:2]:
        if dim is not None and dim < least:
            raise OptionError(
                "input_shape", f"input_shape must be at least {least}x{least} pixels for this model, which "
                f"downsamples by {least} (or None for any size). Received input_shape={input_shape}; upscale "
                "the images instead."
            )
    return input_shape


def _check_style(style: str, spec: ResNetSpec) -> None:
    _check_choice("style", style, list(STYLES))
    if style not in spec.styles:
        raise OptionError(
            "style", f"This model exists in style {spec.styles[0]!r} only (the style of its published "
            f"weights); received style={style!r}. Leave style unset or pass style={spec.styles[0]!r}."
        )


def _stage_dilations(spec: ResNetSpec, output_stride: int) -> list[tuple[int, int]]:
    """(stride, dilation) per stage; dilation replaces stride to keep the resolution."""
    strides = [1] + [2] * (len(spec.repeats) - 1)
    if spec.stride_last:
        if output_stride != 32:
            raise OptionError(
                "output_stride", "output_stride 8 or 16 needs the stride in the first block of a stage; "
                f"ResNet V2 as keras.applications builds it strides in the last. Received output_stride={output_stride}."
            )
        # The same overall stride, taken at the end of conv2 ... conv4 instead of the start of conv3 ... conv5.
        return [(s, 1) for s in strides[1:] + [1]]
    if spec.stem == "cifar":
        if output_stride not in (4, 32):
            raise OptionError(
                "output_stride", "output_stride applies to ImageNet-style networks (8, 16 or 32); a CIFAR ResNet always "
                f"has output stride 4. Received output_stride={output_stride}."
            )
        return [(s, 1) for s in strides]
    _check_choice("output_stride", output_stride, OUTPUT_STRIDES)
    current_stride, dilation, plan = 4, 1, []
    for stride in strides:
        if stride > 1 and current_stride * stride > output_stride:
            dilation *= stride
            stride = 1
        current_stride *= stride
        plan.append((stride, dilation))
    return plan


# timm's stem_width=32: (32, 32, 64) filters, named conv1_1 ... conv1_3 before the stem's norm.
DEEP_STEM = (32, 32, 64)


def _stem(x, spec: ResNetSpec, opts: BlockOptions):
    if spec.stem == "cifar":
        x = conv(x, spec.widths[0], 3, "conv1", opts)
        return relu(normalize(x, "conv1", opts), "conv1_relu")
    if spec.stem == "deep":
        for i, filters in enumerate(DEEP_STEM, start=1):
            x = conv(x, filters, 3, f"conv1_{i}", opts, stride=2 if i == 1 else 1)
            if i < len(DEEP_STEM):
                x = relu(normalize(x, f"conv1_{i}", opts), f"conv1_{i}_relu")
    else:
        x = conv(x, 64, 7, "conv1", opts, stride=2)
    # Pre-activation: the first block's norm and ReLU act on the stem's output.
    if not spec.preact:
        x = relu(normalize(x, "conv1", opts), "conv1_relu")
    # The paper counts the max pool as the start of conv2_x (He et al. 2015, Table 1).
    x = keras.layers.ZeroPadding2D(1, name="conv2_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="conv2_pool")(x)


def _norm_channels(spec: ResNetSpec) -> list[int]:
    """Channel counts of every normalisation layer the spec builds (stem, branches, projections)."""
    channels = [spec.widths[0] if spec.stem == "cifar" else 64] + ([DEEP_STEM[0]] if spec.stem == "deep" else [])
    for width in spec.widths:
        if spec.block == "bottleneck":
            channels += [int(width * spec.width_per_group / 64) * spec.groups, 4 * width]
        else:
            channels.append(width)
    return sorted(set(channels))


def check_build_options(
    spec: ResNetSpec,
    *,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    style: str = "torchvision",
    norm: str = "batch",
    norm_groups: int | None = None,
    output_stride: int = 32,
    drop_path_rate: float = 0.0,
    dropout: float = 0.0,
    preprocessing: str | None = None,
    shortcut: str | None = None,
    zero_init_residual: bool = False,
    **_: object,
) -> tuple:
    """Check every builder option against the spec without building anything; return the input shape.

    ``build_resnet`` calls it first, and a recipe's Plan calls it at ``restransfer validate``, so a
    bad option is found the same way in both places before any data is read.

    Raises:
        OptionError: naming the option (``key``), the value received and what is allowed.
    """
    _check_style(style, spec)
    _check_choice("norm", norm, NORMS)
    _check_choice("pooling", pooling, POOLINGS)
    _check_choice("shortcut", shortcut, SHORTCUTS)
    if not 0.0 <= drop_path_rate < 1.0:
        raise OptionError("drop_path_rate", f"drop_path_rate must be in [0, 1). Received drop_path_rate={drop_path_rate}.")
    if not 0.0 <= dropout < 1.0:
        raise OptionError("dropout", f"dropout must be in [0, 1). Received dropout={dropout}.")
    _check_choice("preprocessing", preprocessing, (None, "auto", *PREPROCESSING_MODES))
    if norm_groups is not None and (isinstance(norm_groups, bool) or norm_groups < 1):
        raise OptionError("norm_groups", f"norm_groups must be a positive number of groups. Received "
                                         f"norm_groups={norm_groups!r}.")
    if norm_groups is not None and norm != "group":
        raise OptionError("norm_groups", f"norm_groups applies to norm='group' only. Received norm={norm!r}, "
                                         f"norm_groups={norm_groups}.")
    if norm == "group":
        for channels in _norm_channels(spec):
            try:
                norm_groups_for(channels, norm_groups)
            except ValueError:
                divisors = [g for g in range(1, 65) if all(c % g == 0 for c in _norm_channels(spec))]
                raise OptionError("norm_groups", f"norm_groups={norm_groups} does not divide the {channels} "
                                                 f"channels of a normalisation layer; this model's layers have "
                                                 f"{_norm_channels(spec)} channels, so use one of {divisors} "
                                                 "(or leave it unset: up to 32 groups per layer).") from None
    if zero_init_residual and spec.preact:
        raise OptionError(
            "zero_init_residual", "zero_init_residual sets the gamma of each residual branch's last norm "
            "to 0; ResNet V2 branches end in a convolution, without a norm. Received zero_init_residual=True."
        )
    _stage_dilations(spec, output_stride)
    return _check_input_shape(input_shape, spec)


def build_resnet(
    spec: ResNetSpec,
    *,
    name: str = "resnet",
    num_classes: int | None = None,
    include_top: bool = True,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    style: str = "torchvision",
    norm: str = "batch",
    norm_groups: int | None = None,
    output_stride: int = 32,
    zero_init_residual: bool = False,
    drop_path_rate: float = 0.0,
    dropout: float = 0.0,
    classifier_activation: str | None = "softmax",
    preprocessing: str | None = None,
    shortcut: str | None = None,
) -> keras.Model:
    """Build a functional ResNet from a variant spec.

    Args:
        spec: the variant (see ``restransfer.models.specs.SPECS``).
        name: the model's name.
        num_classes: classes of the head; the spec's default (1000 or 10) when None.
        include_top: add global pooling and the classifier; else end at the last stage.
        input_shape: ``(height, width, 3)``, at least the downsampling (32 px; 4 px for CIFAR ResNets), or ``None`` dims for any size.
        pooling: without the top, ``None`` (feature map), ``"avg"`` or ``"max"``.
        style: ``"torchvision"`` (v1.5) or ``"keras"`` (v1 as keras.applications); a spec
            whose weights exist in one style only (D, SE, V2) accepts that one.
        norm: ``"batch"``, ``"sync_batch"`` (statistics across replicas), ``"group"``,
            ``"layer"`` or ``"instance"``.
        norm_groups: groups for ``norm="group"`` (default: up to 32, >= 2 channels each).
        output_stride: 32, or 16/8 with dilated last stages for dense prediction.
        zero_init_residual: start each residual branch's last norm at gamma 0.
        drop_path_rate: stochastic depth, rising linearly to this rate at the last block.
        dropout: dropout rate before the classifier.
        classifier_activation: ``"softmax"`` or ``None`` for logits; always float32.
        preprocessing: add a ``Preprocess`` layer (``"auto"`` picks the style's weights'
            normalisation) so the model takes RGB pixels in 0-255; ``None`` for none.
        shortcut: ``"A"`` or ``"B"`` to override the spec's shortcut type.

    Returns:
        A ``keras.Model`` whose layer names start with their stage (``conv1`` ... ``conv5``).
    """
    input_shape = check_build_options(
        spec, input_shape=input_shape, pooling=pooling, style=style, norm=norm, norm_groups=norm_groups,
        output_stride=output_stride, drop_path_rate=drop_path_rate, dropout=dropout,
        preprocessing=preprocessing, shortcut=shortcut, zero_init_residual=zero_init_residual,
    )
    if preprocessing == "auto":
        preprocessing = spec.preprocessing or STYLE_PREPROCESSING[style]
    opts = BlockOptions(
        style=STYLES[style], norm=norm, norm_groups=norm_groups, zero_init_residual=zero_init_residual,
        residual=spec.residual, shortcut=shortcut or spec.shortcut, groups=spec.groups,
        width_per_group=spec.width_per_group, avg_down=spec.avg_down, se=spec.se,
    )
    block_fn = (PREACT_BLOCKS if spec.preact else BLOCKS)[spec.block]
    total_blocks = sum(spec.repeats)

    inputs = keras.Input(shape=input_shape, name="image")
    x = Preprocess(preprocessing, name="preprocess")(inputs) if preprocessing else inputs
    x = _stem(x, spec, opts)
    index = 0
    previous_dilation = 1
    for stage, (repeats, width, (stride, dilation)) in enumerate(
        zip(spec.repeats, spec.widths, _stage_dilations(spec, output_stride)), start=2
    ):
        strided_block = repeats - 1 if spec.stride_last else 0
        for b in range(repeats):
            drop_rate = drop_path_rate * index / max(total_blocks - 1, 1)
            x = block_fn(
                x, width, f"conv{stage}_block{b + 1}", opts,
                stride=stride if b == strided_block else 1,
                # As torchvision: a newly dilated stage's first block keeps the old dilation.
                dilation=previous_dilation if b == 0 else dilation,
                stage_dilation=dilation,
                drop_rate=drop_rate,
            )
            index += 1
        previous_dilation = dilation
    if spec.preact:
        # keras.applications' names; stages.layer_stage counts them in the last stage.
        x = relu(normalize(x, "post", opts), "post_relu")

    if include_top:
        outputs = heads.classifier(
            x, num_classes or spec.default_classes, dropout=dropout, activation=classifier_activation
        )
    elif pooling:
        pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
        outputs = pool(name=f"{pooling}_pool")(x)
    else:
        outputs = x
    return keras.Model(inputs, outputs, name=name)
