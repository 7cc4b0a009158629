"""torchvision / timm ResNet state-dict names and layouts, translated to our Keras layers.

Both libraries name a ResNet's tensors the same way (timm's ``ResNet`` started as a copy of
torchvision's): ``conv1``/``bn1`` for the stem, ``layer{s}.{b}.conv{i}``/``bn{i}`` inside a
block, ``layer{s}.{b}.downsample.0``/``.1`` for the projection shortcut and ``fc`` for the
classifier. Our layers follow keras.applications (``conv{s + 1}_block{b + 1}_{i}_conv``), so
the mapping is a rename plus a transpose of every kernel.

timm's variants add three layouts: a deep stem (``conv1.0``, ``conv1.1``, ``conv1.3``,
``conv1.4``, ``conv1.6``: conv, bn, conv, bn, conv, with ReLUs between), an average-pool
shortcut (``downsample.0`` is the weightless pool, so the conv is ``.1`` and the bn ``.2``) and
squeeze-excitation (``layer{s}.{b}.se.fc1``/``fc2``, 1x1 convs with biases).
"""

from __future__ import annotations

import re

import numpy as np

# Checkpoints saved from a DataParallel / DDP wrapper or an EMA/Lightning module carry these.
PREFIXES = ("module.", "model.")
# BatchNorm's step counter: PyTorch bookkeeping, not part of the function the network computes.
IGNORED = ("num_batches_tracked",)

_PARAMS = {
    "conv": {"weight": "kernel", "bias": "bias"},
    "bn": {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"},
    "fc": {"weight": "kernel", "bias": "bias"},
}
_STEM = re.compile(r"^(conv|bn)1\.(\w+)$")
_DEEP_STEM = re.compile(r"^conv1\.(\d)\.(\w+)$")
# Sequential index in timm's deep stem -> our layer (the ReLUs at 2 and 5 hold nothing).
_DEEP_STEM_LAYERS = {"0": "conv1_1_conv", "1": "conv1_1_bn", "3": "conv1_2_conv", "4": "conv1_2_bn", "6": "conv1_3_conv"}
_SE = re.compile(r"^layer(\d+)\.(\d+)\.se\.fc([12])\.(weight|bias)$")
_SE_LAYERS = {"1": "se_reduce", "2": "se_expand"}
_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.(conv|bn)(\d+)\.(\w+)$")
_DOWNSAMPLE = re.compile(r"^layer(\d+)\.(\d+)\.downsample\.([012])\.(\w+)$")
_AVG_DOWN = re.compile(r"\.downsample\.2\.")
_FC = re.compile(r"^fc\.(\w+)$")
_KERAS = re.compile(r"^(?:conv(\d+)_block(\d+)_(\d+)|(conv1)|(predictions))_?(conv|bn)?/(\w+)$")
_KERAS_DEEP_STEM = re.compile(r"^(conv1_\d_(?:conv|bn))/(\w+)$")
_KERAS_SE = re.compile(r"^conv(\d+)_block(\d+)_(se_reduce|se_expand)/(kernel|bias)$")


def strip_prefix(key: str) -> str:
    """``module.model.layer1.0.conv1.weight`` -> ``layer1.0.conv1.weight``."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def has_avg_down(keys) -> bool:
    """Whether a state dict's projection shortcuts start with timm's average pool (ResNet-D)."""
    return any(_AVG_DOWN.search(key) for key in keys)


def keras_name(torch_key: str, *, avg_down: bool = False) -> str | None:
    """The Keras weight (``layer/variable``) a state-dict key maps to, or None if none does.

    Args:
        torch_key: the state-dict key, without wrapper prefixes.
        avg_down: the file's shortcuts are ResNet-D's (``downsample.1`` is then the conv).

    Example:
        >>> keras_name("layer1.0.downsample.1.running_var")
        'conv2_block1_0_bn/moving_variance'
    """
    if match := _STEM.match(torch_key):
        kind, param = match.groups()
        layer = f"conv1_{kind}"
    elif match := _DEEP_STEM.match(torch_key):
        index, param = match.groups()
        layer = _DEEP_STEM_LAYERS.get(index)
        if layer is None:
            return None
        kind = layer.rsplit("_", 1)[1]
    elif match := _BLOCK.match(torch_key):
        stage, block, kind, index, param = match.groups()
        layer = f"conv{int(stage) + 1}_block{int(block) + 1}_{index}_{kind}"
    elif match := _SE.match(torch_key):
        stage, block, index, param = match.groups()
        kind = "conv"
        layer = f"conv{int(stage) + 1}_block{int(block) + 1}_{_SE_LAYERS[index]}"
    elif match := _DOWNSAMPLE.match(torch_key):
        stage, block, position, param = match.groups()
        conv_position, bn_position = ("1", "2") if avg_down else ("0", "1")
        if position not in (conv_position, bn_position):
            return None
        kind = "conv" if position == conv_position else "bn"
        layer = f"conv{int(stage) + 1}_block{int(block) + 1}_0_{kind}"
    elif match := _FC.match(torch_key):
        kind, param = "fc", match.group(1)
        layer = "predictions"
    else:
        return None
    variable = _PARAMS[kind].get(param)
    return f"{layer}/{variable}" if variable else None


def torch_name(keras_key: str, *, avg_down: bool = False) -> str | None:
    """The inverse of :func:`keras_name`, for error messages about missing tensors."""
    if match := _KERAS_DEEP_STEM.match(keras_key):
        layer, variable = match.groups()
        index = {v: k for k, v in _DEEP_STEM_LAYERS.items()}[layer]
        kind = layer.rsplit("_", 1)[1]
        param = {v: k for k, v in _PARAMS[kind].items()}.get(variable)
        return f"conv1.{index}.{param}" if param else None
    if match := _KERAS_SE.match(keras_key):
        stage, block, layer, variable = match.groups()
        fc = {v: k for k, v in _SE_LAYERS.items()}[layer]
        return f"layer{int(stage) - 1}.{int(block) - 1}.se.fc{fc}.{'weight' if variable == 'kernel' else 'bias'}"
    match = _KERAS.match(keras_key)
    if not match:
        return None
    stage, block, index, stem, head, kind, variable = match.groups()
    kind = "fc" if head else kind
    if kind is None:
        return None
    param = {v: k for k, v in _PARAMS[kind].items()}.get(variable)
    if param is None:
        return None
    if head:
        return f"fc.{param}"
    if stem:
        return f"{kind}1.{param}"
    prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
    if index == "0":
        conv_position = 1 if avg_down else 0
        return f"{prefix}.downsample.{conv_position if kind == 'conv' else conv_position + 1}.{param}"
    return f"{prefix}.{kind}{index}.{param}"


def to_keras_layout(keras_key: str, array: np.ndarray) -> np.ndarray:
    """PyTorch layouts to Keras': conv OIHW -> HWIO, linear (out, in) -> (in, out).

    A grouped convolution's PyTorch kernel ``(out, in / groups, kh, kw)`` becomes
    ``(kh, kw, in / groups, out)``, the kernel of ``keras.layers.Conv2D(groups=...)``: both
    split the output channels into contiguous groups, so no further reordering is needed.
    """
    if not keras_key.endswith("/kernel"):
        return array
    if "_se_" in keras_key and array.ndim == 4:
        # timm's 1x1 convs on the pooled map are our Dense layers: (out, in, 1, 1) -> (in, out).
        return array[:, :, 0, 0].T
    if array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if array.ndim == 2:
        return array.T
    return array


def from_state_dict(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Rename and re-lay a torchvision/timm state dict into Keras weights.

    Returns:
        ``(tensors, origin)``: tensors keyed ``layer/variable`` in Keras layout, and for each
        key the state-dict name it came from (for error messages). Keys that map to no layer
        are kept under their original name, so the caller reports them as unused.
    """
    tensors: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    avg_down = has_avg_down(state)
    for raw_key, array in state.items():
        key = strip_prefix(raw_key)
        if key.rsplit(".", 1)[-1] in IGNORED:
            continue
        target = keras_name(key, avg_down=avg_down) or key
        tensors[target] = to_keras_layout(target, np.asarray(array))
        origin[target] = raw_key
    return tensors, origin
