"""Residual blocks as plain functions ``x -> x`` with systematic, public layer names.

Every layer of block ``b`` in stage ``s`` is named ``conv{s}_block{b}_...``: ``_0_*`` is the
projection shortcut, ``_1_*``, ``_2_*`` (and ``_3_*``) the main branch, ``_add`` the sum and
``_out`` the final ReLU, as in keras.applications; ``_se_*`` is the squeeze-excitation and
``_preact_*`` the pre-activation of a V2 block (whose sum is ``_out``, as keras.applications
names it). Freezing and weight loading rely on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from restransfer.models.layers import DropPath, GroupedConv2D, ZeroPadShortcut

# "sync_batch" shares BatchNorm statistics across replicas (tf.distribute); under JAX data
# parallelism plain "batch" already sees the global batch.
NORMS = ("batch", "sync_batch", "group", "layer", "instance")
BATCH_NORMS = ("batch", "sync_batch")  # the norms with moving statistics
_NORM_SUFFIX = {"batch": "bn", "sync_batch": "bn", "group": "gn", "layer": "ln", "instance": "in"}


@dataclass(frozen=True)
class Style:
    """Where the two published ResNet v1 lineages differ."""

    name: str
    use_bias: bool
    epsilon: float
    stride_on_first_1x1: bool


STYLES = {
    # torchvision / timm "v1.5": stride on the 3x3, which is ~0.5% top-1 better than v1.
    "torchvision": Style("torchvision", use_bias=False, epsilon=1e-5, stride_on_first_1x1=False),
    # keras.applications ResNet50/101/152 v1, as in the original Caffe release.
    "keras": Style("keras", use_bias=True, epsilon=1.001e-5, stride_on_first_1x1=True),
}


@dataclass(frozen=True)
class BlockOptions:
    """Options shared by every block of a network."""

    style: Style
    norm: str = "batch"
    norm_groups: int | None = None
    zero_init_residual: bool = False
    residual: bool = True
    shortcut: str = "B"
    groups: int = 1
    width_per_group: int = 64
    avg_down: bool = False
    se: bool = False


def _conv_init():
    # He et al. 2015 ("Delving deep"), fan_out as torchvision: keeps backward variance stable.
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def conv(x, filters: int, kernel: int, name: str, opts: BlockOptions, *, stride: int = 1,
         dilation: int = 1, groups: int = 1, use_bias: bool | None = None):
    """Convolution named ``{name}_conv``; stride 2 pads explicitly (``{name}_pad``).

    Keras' ``padding="same"`` pads stride-2 convolutions asymmetrically, unlike the published
    weights, so those get a symmetric ZeroPadding2D and ``valid``. ``use_bias`` defaults to
    the style's.
    """
    padding = "valid"
    if kernel > 1 and stride == 1:
        padding = "same"
    elif kernel > 1:
        x = keras.layers.ZeroPadding2D(dilation * (kernel - 1) // 2, name=f"{name}_pad")(x)
    conv_class = GroupedConv2D if groups > 1 else keras.layers.Conv2D
    return conv_class(
        filters, kernel, strides=stride, padding=padding, dilation_rate=dilation, groups=groups,
        use_bias=opts.style.use_bias if use_bias is None else use_bias,
        kernel_initializer=_conv_init(), name=f"{name}_conv",
    )(x)


def norm_groups_for(channels: int, requested: int | None = None) -> int:
    """Group count for GroupNorm: ``requested`` if it divides, else up to 32 with >= 2 channels each."""
    if requested:
        if channels % requested:
            raise ValueError(f"norm_groups={requested} does not divide {channels} channels.")
        return requested
    groups = 32
    while groups > 1 and (channels % groups or channels // groups < 2):
        groups //= 2
    return groups


def norm(x, name: str, opts: BlockOptions, *, zero_init: bool = False):
    """Normalisation layer named ``{name}_bn`` (``_gn``, ``_ln``, ``_in`` for the others)."""
    gamma = "zeros" if zero_init else "ones"
    layer_name = f"{name}_{_NORM_SUFFIX[opts.norm]}"
    eps = opts.style.epsilon
    if opts.norm in BATCH_NORMS:
        return keras.layers.BatchNormalization(
            epsilon=eps, gamma_initializer=gamma, name=layer_name,
            synchronized=opts.norm == "sync_batch" and keras.backend.backend() == "tensorflow",
        )(x)
    channels = x.shape[-1]
    groups = {
        "group": norm_groups_for(channels, opts.norm_groups),
        "layer": 1,
        "instance": channels,
    }[opts.norm]
    return keras.layers.GroupNormalization(groups, epsilon=eps, gamma_initializer=gamma, name=layer_name)(x)


def relu(x, name: str):
    return keras.layers.Activation("relu", name=name)(x)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, at least ``divisor`` (timm's rounding)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def squeeze_excite(x, name: str, *, ratio: float = 1 / 16):
    """Squeeze-and-excitation (Hu et al. 2018): scale each channel by a gate of the global mean.

    Dense layers on the pooled ``1x1`` map hold exactly the weights of timm's 1x1 convs
    (``se.fc1``, ``se.fc2``, with biases) and keep convolutions bias-free in a torchvision-style
    network, which is how weight files tell the two styles apart.
    """
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    s = keras.layers.Dense(make_divisible(channels * ratio), activation="relu", name=f"{name}_se_reduce")(s)
    s = keras.layers.Dense(channels, activation="sigmoid", name=f"{name}_se_expand")(s)
    return keras.layers.Multiply(name=f"{name}_se_scale")([x, s])


def _avg_down(x, stride: int, dilation: int, name: str):
    """ResNet-D's shortcut pooling: every input pixel reaches the 1x1 projection.

    As timm's ``downsample_avg``: a 2x2 average with ``ceil_mode`` that leaves the padding out
    of the mean (what Keras' ``"same"`` pooling does) when the stage strides; in a dilated
    stage a stride-1 2x2 average whose bottom/right zero padding does count (timm's
    ``AvgPool2dSame``); nothing in the first stage.
    """
    if stride > 1:
        return keras.layers.AveragePooling2D(2, stride, padding="same", name=f"{name}_0_pool")(x)
    if dilation > 1:
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_0_pool_pad")(x)
        return keras.layers.AveragePooling2D(2, 1, name=f"{name}_0_pool")(x)
    return x


def _shortcut(x, filters: int, stride: int, name: str, opts: BlockOptions, stage_dilation: int = 1):
    if stride == 1 and x.shape[-1] == filters:
        return x
    if opts.shortcut == "A":
        return ZeroPadShortcut(filters, stride, name=f"{name}_0_shortcut")(x)
    if opts.avg_down:
        x = _avg_down(x, stride, stage_dilation, name)
        stride = 1
    return norm(conv(x, filters, 1, f"{name}_0", opts, stride=stride), f"{name}_0", opts)


def _merge(x, shortcut, name: str, opts: BlockOptions, drop_rate: float):
    if drop_rate > 0:
        x = DropPath(drop_rate, name=f"{name}_drop")(x)
    if opts.residual:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return relu(x, f"{name}_out")


def basic_block(x, filters: int, name: str, opts: BlockOptions, *, stride: int = 1,
                dilation: int = 1, stage_dilation: int = 1, drop_rate: float = 0.0):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR ResNets).

    ``dilation`` is the 3x3's; ``stage_dilation`` the stage's, for ResNet-D's shortcut pool.
    """
    shortcut = _shortcut(x, filters, stride, name, opts, stage_dilation) if opts.residual else None
    x = conv(x, filters, 3, f"{name}_1", opts, stride=stride, dilation=dilation)
    x = relu(norm(x, f"{name}_1", opts), f"{name}_1_relu")
    x = conv(x, filters, 3, f"{name}_2", opts, dilation=dilation)
    x = norm(x, f"{name}_2", opts, zero_init=opts.zero_init_residual)
    if opts.se:
        x = squeeze_excite(x, name)
    return _merge(x, shortcut, name, opts, drop_rate)


def _bottleneck_width(filters: int, opts: BlockOptions) -> int:
    return int(filters * opts.width_per_group / 64) * opts.groups


def bottleneck_block(x, filters: int, name: str, opts: BlockOptions, *, stride: int = 1,
                     dilation: int = 1, stage_dilation: int = 1, drop_rate: float = 0.0):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand to ``4 * filters`` channels."""
    out_filters = 4 * filters
    width = _bottleneck_width(filters, opts)
    shortcut = _shortcut(x, out_filters, stride, name, opts, stage_dilation) if opts.residual else None
    stride_1x1, stride_3x3 = (stride, 1) if opts.style.stride_on_first_1x1 else (1, stride)
    x = conv(x, width, 1, f"{name}_1", opts, stride=stride_1x1)
    x = relu(norm(x, f"{name}_1", opts), f"{name}_1_relu")
    x = conv(x, width, 3, f"{name}_2", opts, stride=stride_3x3, dilation=dilation,
             groups=opts.groups)
    x = relu(norm(x, f"{name}_2", opts), f"{name}_2_relu")
    x = conv(x, out_filters, 1, f"{name}_3", opts)
    x = norm(x, f"{name}_3", opts, zero_init=opts.zero_init_residual)
    if opts.se:
        x = squeeze_excite(x, name)
    return _merge(x, shortcut, name, opts, drop_rate)


def preact_bottleneck_block(x, filters: int, name: str, opts: BlockOptions, *, stride: int = 1,
                            dilation: int = 1, stage_dilation: int = 1, drop_rate: float = 0.0):
    """ResNet V2's bottleneck (He et al. 2016): norm and ReLU first, the sum left unactivated.

    As keras.applications' ``residual_block_v2``: the projection (when the channels change)
    starts from the pre-activation; a strided block without one subsamples its input with a
    1x1 max pool. Convolutions that a norm follows have no bias; the others take the style's.
    """
    del stage_dilation  # no average-pool shortcut in V2
    out_filters = 4 * filters
    width = _bottleneck_width(filters, opts)
    preact = relu(norm(x, f"{name}_preact", opts), f"{name}_preact_relu")
    shortcut = None
    if opts.residual and x.shape[-1] != out_filters:
        shortcut = conv(preact, out_filters, 1, f"{name}_0", opts, stride=stride)
    elif opts.residual and stride > 1:
        shortcut = keras.layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
    elif opts.residual:
        shortcut = x
    x = conv(preact, width, 1, f"{name}_1", opts, use_bias=False)
    x = relu(norm(x, f"{name}_1", opts), f"{name}_1_relu")
    x = conv(x, width, 3, f"{name}_2", opts, stride=stride, dilation=dilation, groups=opts.groups,
             use_bias=False)
    x = relu(norm(x, f"{name}_2", opts), f"{name}_2_relu")
    x = conv(x, out_filters, 1, f"{name}_3", opts)
    if drop_rate > 0:
        x = DropPath(drop_rate, name=f"{name}_drop")(x)
    if shortcut is None:
        return x
    return keras.layers.Add(name=f"{name}_out")([shortcut, x])


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}
PREACT_BLOCKS = {"bottleneck": preact_bottleneck_block}
