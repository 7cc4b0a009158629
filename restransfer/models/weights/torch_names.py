"""torchvision / timm ResNet state-dict names and layouts, translated to our Keras layers.

Both libraries name a ResNet's tensors the same way (timm's ``ResNet`` started as a copy of
torchvision's): ``conv1``/``bn1`` for the stem, ``layer{s}.{b}.conv{i}``/``bn{i}`` inside a
block, ``layer{s}.{b}.downsample.0``/``.1`` for the projection shortcut and ``fc`` for the
classifier. Our layers follow keras.applications (``conv{s + 1}_block{b + 1}_{i}_conv``), so
the mapping is a rename plus a transpose of every kernel.
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
_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.(conv|bn)(\d+)\.(\w+)$")
_DOWNSAMPLE = re.compile(r"^layer(\d+)\.(\d+)\.downsample\.([01])\.(\w+)$")
_FC = re.compile(r"^fc\.(\w+)$")
_KERAS = re.compile(r"^(?:conv(\d+)_block(\d+)_(\d+)|(conv1)|(predictions))_?(conv|bn)?/(\w+)$")


def strip_prefix(key: str) -> str:
    """``module.model.layer1.0.conv1.weight`` -> ``layer1.0.conv1.weight``."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def keras_name(torch_key: str) -> str | None:
    """The Keras weight (``layer/variable``) a state-dict key maps to, or None if none does.

    Example:
        >>> keras_name("layer1.0.downsample.1.running_var")
        'conv2_block1_0_bn/moving_variance'
    """
    if match := _STEM.match(torch_key):
        kind, param = match.groups()
        layer = f"conv1_{kind}"
    elif match := _BLOCK.match(torch_key):
        stage, block, kind, index, param = match.groups()
        layer = f"conv{int(stage) + 1}_block{int(block) + 1}_{index}_{kind}"
    elif match := _DOWNSAMPLE.match(torch_key):
        stage, block, position, param = match.groups()
        kind = "conv" if position == "0" else "bn"
        layer = f"conv{int(stage) + 1}_block{int(block) + 1}_0_{kind}"
    elif match := _FC.match(torch_key):
        kind, param = "fc", match.group(1)
        layer = "predictions"
    else:
        return None
    variable = _PARAMS[kind].get(param)
    return f"{layer}/{variable}" if variable else None


def torch_name(keras_key: str) -> str | None:
    """The inverse of :func:`keras_name`, for error messages about missing tensors."""
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
        return f"{prefix}.downsample.{0 if kind == 'conv' else 1}.{param}"
    return f"{prefix}.{kind}{index}.{param}"


def to_keras_layout(keras_key: str, array: np.ndarray) -> np.ndarray:
    """PyTorch layouts to Keras': conv OIHW -> HWIO, linear (out, in) -> (in, out).

    A grouped convolution's PyTorch kernel ``(out, in / groups, kh, kw)`` becomes
    ``(kh, kw, in / groups, out)``, the kernel of ``keras.layers.Conv2D(groups=...)``: both
    split the output channels into contiguous groups, so no further reordering is needed.
    """
    if not keras_key.endswith("/kernel"):
        return array
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
    for raw_key, array in state.items():
        key = strip_prefix(raw_key)
        if key.rsplit(".", 1)[-1] in IGNORED:
            continue
        target = keras_name(key) or key
        tensors[target] = to_keras_layout(target, np.asarray(array))
        origin[target] = raw_key
    return tensors, origin
