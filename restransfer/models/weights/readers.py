"""Read weight files into plain ``{"layer/variable": ndarray}`` dicts, without building a model.

Every reader treats its file as untrusted: h5py and safetensors read arrays only, ``.npz``
refuses pickles, ``.pth`` goes through ``torch.load(weights_only=True)`` and ``.keras``
through Keras' safe mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from restransfer.errors import WeightsError
from restransfer.models.weights.torch_names import from_state_dict

__all__ = ["from_state_dict", "read_json", "read_keras_h5", "read_keras_model", "read_state_dict"]

# keras-applications' resnet_common.py, which produced the published ResNet files, named the
# classifier "probs"; keras.applications (and our builder) call it "predictions".
LAYER_ALIASES = {"probs": "predictions"}
# Wrappers that training scripts put around a state dict in a .pth checkpoint.
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "state_dict_ema")


def _decode(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _h5_list_attr(group, name: str) -> list[str] | None:
    """A list attribute, also when Keras split it into ``name0``, ``name1`` ... (64 KB limit)."""
    if name in group.attrs:
        return [_decode(v) for v in group.attrs[name]]
    if f"{name}0" not in group.attrs:
        return None
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values.extend(_decode(v) for v in group.attrs[f"{name}{chunk}"])
        chunk += 1
    return values


def read_keras_h5(path: Path) -> dict[str, np.ndarray]:
    """Read a keras.applications-format (legacy, by layer name) ``.h5`` weights file.

    The layout: the root (or its ``model_weights`` group, in a full-model ``.h5``) lists its
    layers in the attribute ``layer_names``; each layer's group lists ``weight_names`` such as
    ``conv1_conv/kernel:0``, which are also the datasets' paths inside the group.
    """
    import h5py

    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise WeightsError(f"Cannot read {path} as an HDF5 file ({error}); is it a complete .h5 download?") from None
    with file:
        root = file["model_weights"] if "model_weights" in file else file
        layer_names = _h5_list_attr(root, "layer_names")
        if layer_names is None:
            raise WeightsError(
                f"{path} is an HDF5 file but not a keras.applications-format weights file (it has no "
                "'layer_names' attribute). Keras 3 weight files must be named '*.weights.h5'."
            )
        tensors: dict[str, np.ndarray] = {}
        for layer_name in layer_names:
            group = root[layer_name]
            layer = LAYER_ALIASES.get(layer_name, layer_name)
            for weight_name in _h5_list_attr(group, "weight_names") or []:
                variable = weight_name.rsplit("/", 1)[-1].split(":")[0]
                key = f"{layer}/{variable}"
                if key in tensors:
                    raise WeightsError(f"{path} holds two weights named '{key}' in layer '{layer_name}'.")
                tensors[key] = np.asarray(group[weight_name])
    return tensors


def own_weights_h5_style(path: Path) -> str | None:
    """The style of a Keras 3 ``.weights.h5`` file: convolutions with biases are keras-style.

    Keras 3 stores each layer's variables under ``layers/<class-based name>/vars/<index>``; a
    Conv2D with a bias has a second variable.
    """
    import h5py

    try:
        with h5py.File(path, "r") as file:
            layers = file.get("layers")
            if layers is None:
                return None
            convs = [layers[name]["vars"] for name in layers if name.startswith("conv2d") and "vars" in layers[name]]
            if not convs:
                return None
            return "keras" if any(len(v) > 1 for v in convs) else "torchvision"
    except OSError as error:
        raise WeightsError(f"Cannot read {path} as an HDF5 file ({error}).") from None


def _floats(state: Mapping[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    out = {}
    for key, value in state.items():
        array = np.asarray(value)
        if array.dtype.kind == "f" and array.dtype != np.float32:
            array = array.astype(np.float32)
        out[str(key)] = array
    if not out:
        raise WeightsError(f"{path} holds no tensors.")
    return out


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise WeightsError(
            f"Reading {path.name} needs PyTorch: install the extra (`pip install 'restransfer[torch]'`) or "
            "convert the file once to .safetensors (`safetensors.torch.save_file(torch.load(path), "
            "'weights.safetensors')`) and pass that instead."
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        raise WeightsError(
            f"torch.load(weights_only=True) cannot read {path}: {str(error).splitlines()[0]} "
            "Only plain state dicts load (save `model.state_dict()`, not the model object)."
        ) from None
    while isinstance(obj, Mapping) and not any(torch.is_tensor(v) for v in obj.values()):
        inner = next((obj[k] for k in _STATE_DICT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors.")
    return {
        key: (value.detach().float() if value.is_floating_point() else value.detach()).numpy()
        for key, value in obj.items() if torch.is_tensor(value)
    }


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Read a torchvision/timm state dict from ``.safetensors``, ``.npz`` or ``.pth``/``.pt``/``.bin``.

    Half-precision tensors are widened to float32. Reading ``.safetensors`` and ``.npz``
    needs no PyTorch.
    """
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, TypeError, ValueError) as error:
            raise WeightsError(
                f"Cannot read {path} as .safetensors with NumPy ({error}). bfloat16 files need converting to "
                "float32 first (`{k: v.float() for k, v in state.items()}` in PyTorch)."
            ) from None
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                state = {key: archive[key] for key in archive.files}
        except (ValueError, OSError) as error:
            raise WeightsError(f"Cannot read {path} as a NumPy .npz of arrays ({error}).") from None
    else:
        state = _read_torch(path)
    return _floats(state, path)


def read_json(path: Path) -> dict:
    """A JSON object (a hub folder's or preset's ``config.json``), or a WeightsError."""
    import json

    try:
        value = json.loads(path.read_text(encoding="utf8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"Cannot read {path} as JSON ({error}).") from None
    if not isinstance(value, dict):
        raise WeightsError(f"{path} holds a JSON {type(value).__name__}, not an object.")
    return value


def model_tensors(model) -> dict[str, np.ndarray]:
    """Every weight of a built Keras model as ``{"layer/variable": ndarray}``."""
    from keras import ops

    return {
        f"{layer.name}/{weight.name}": np.asarray(ops.convert_to_numpy(weight))
        for layer in model.layers for weight in layer.weights
    }


def read_keras_model(path: Path) -> dict[str, np.ndarray]:
    """Weights of a ``.keras`` model, loaded in safe mode (no code from the file runs)."""
    from restransfer.errors import ConfigError
    from restransfer.models.loading import load_model_file

    try:
        model = load_model_file(path)
    except ConfigError as error:
        raise WeightsError(str(error)) from None
    return model_tensors(model)
