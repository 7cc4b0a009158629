"""What a ``weights=`` value names, decided from the value, paths and ``config.json`` alone.

:func:`weights_source` builds no model, imports neither Keras nor TensorFlow and reads at most
one small JSON file, so a recipe can type its ``model.weights`` at validation time; the loader
(:func:`restransfer.models.weights.load_weights`) classifies through the same function.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from restransfer.errors import WeightsError
from restransfer.models.weights import imagenet
from restransfer.models.weights import keras_hub as keras_hub_presets
from restransfer.models.weights.families import check_hub_architecture
from restransfer.models.weights.readers import read_json

KINDS = ("none", "imagenet", "file", "run_folder", "hub_folder", "keras_hub_preset")
# File formats, by how a name ends (the longest ending first).
FORMATS = {
    ".weights.h5": "restransfer_weights",  # a Keras 3 checkpoint of our own (model.save_weights)
    ".keras": "keras_model",
    ".h5": "keras_h5",  # keras.applications' by-name layout
    ".hdf5": "keras_h5",
    ".safetensors": "state_dict",  # torchvision / timm
    ".npz": "state_dict",
    ".pth": "state_dict",
    ".pt": "state_dict",
    ".bin": "state_dict",
}
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # as timm's save_for_hf writes them
# timm config.json model_args that leave the weights' network as the architecture builds it.
_HUB_HARMLESS_ARGS = {"in_chans", "num_classes", "global_pool", "drop_rate", "drop_path_rate", "output_stride"}
SUPPORTED = (
    "'imagenet'; a keras.applications-format .h5; a torchvision/timm state dict (.safetensors, .npz, "
    ".pth, .pt, .bin); a restransfer checkpoint (.weights.h5 or .keras); a run folder holding model.keras; "
    "a timm/Hugging Face hub folder (config.json + model.safetensors); or a KerasHub ResNet preset folder "
    "(config.json + model.weights.h5)"
)


@dataclass(frozen=True)
class WeightsSource:
    """A classified ``weights=`` value.

    Attributes:
        kind: one of :data:`KINDS`.
        path: the file or folder (None for ``none`` and ``imagenet``).
        format: for ``file``, one of the values of :data:`FORMATS`; for folders, the format of
            the weights file inside (``keras_model``, ``state_dict`` or ``keras_hub``).
        weights_file: the file that holds the tensors (the path itself for a file).
        architecture: for a hub folder, timm's architecture name from ``config.json``; for a
            KerasHub preset, the restransfer model it equals.
    """

    kind: str
    path: Path | None = None
    format: str | None = None
    weights_file: Path | None = None
    architecture: str | None = None


def file_format(path: Path) -> str:
    """The format of a weights file from its name, or a WeightsError listing what is supported."""
    name = path.name.lower()
    for ending, kind in FORMATS.items():
        if name.endswith(ending):
            return kind
    raise WeightsError(f"Unknown weights format '{path.suffix}' of {path}. Supported: {SUPPORTED}.")


def _hub_folder(folder: Path, config: dict, model_name: str | None) -> WeightsSource:
    architecture = config["architecture"]
    if not isinstance(architecture, str) or not architecture:
        raise WeightsError(f"{folder / 'config.json'} has architecture={architecture!r}; expected a timm model name.")
    weights = next((folder / name for name in HUB_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise WeightsError(
            f"{folder} is a timm/Hugging Face hub folder ({architecture!r}) without its weights: expected "
            f"{' or '.join(HUB_WEIGHTS)} next to config.json (download the whole folder)."
        )
    unusual = sorted(set(config.get("model_args") or {}) - _HUB_HARMLESS_ARGS)
    if unusual:
        raise WeightsError(
            f"{folder / 'config.json'} builds {architecture!r} with model_args {unusual}, which change the "
            "network beyond what its name says; restransfer builds each name as timm registers it."
        )
    if model_name is not None:
        check_hub_architecture(architecture, model_name, str(folder))
    return WeightsSource("hub_folder", folder, file_format(weights), weights, architecture.split(".", 1)[0])


def _keras_hub_preset(folder: Path, config: dict, model_name: str | None) -> WeightsSource:
    name = keras_hub_presets.model_name(config, str(folder))
    weights = folder / keras_hub_presets.WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsError(f"{folder} is a KerasHub preset without {keras_hub_presets.WEIGHTS_FILE}.")
    if model_name is not None and model_name != name:
        raise WeightsError(
            f"{folder} is a KerasHub preset of '{name}', not '{model_name}'. Build create_model('{name}', ...) "
            "to load it."
        )
    return WeightsSource("keras_hub_preset", folder, "keras_hub", weights, name)


def _folder(folder: Path, model_name: str | None) -> WeightsSource:
    if (folder / "model.keras").is_file():
        return WeightsSource("run_folder", folder, "keras_model", folder / "model.keras")
    config_path = folder / "config.json"
    if config_path.is_file():
        config = read_json(config_path)
        if "architecture" in config:
            return _hub_folder(folder, config, model_name)
        if keras_hub_presets.is_keras_hub_config(config):
            return _keras_hub_preset(folder, config, model_name)
        if "model_type" in config or "architectures" in config:
            raise WeightsError(
                f"{folder} is a Hugging Face transformers folder (model_type={config.get('model_type')!r}); "
                "its tensor names are transformers', not timm's. Use the timm/<name> folder of the same "
                "network, which restransfer reads."
            )
    raise WeightsError(
        f"{folder} is a folder, but not one restransfer reads: expected a run folder (model.keras), a "
        "timm/Hugging Face hub folder (config.json with 'architecture' + model.safetensors) or a KerasHub "
        "preset (config.json + model.weights.h5). To load a weights file, pass its path."
    )


def weights_source(value: str | os.PathLike | None, *, model_name: str | None = None) -> WeightsSource:
    """Classify a ``weights=`` value without loading it.

    Args:
        value: ``None`` or ``"none"``, ``"imagenet"``, or the path of a weights file or folder.
        model_name: the registry name the weights are for; when given, everything knowable from
            the value and ``config.json`` is checked too (ImageNet files exist for it, a hub
            folder's architecture and a KerasHub preset's network are this model).

    Returns:
        The :class:`WeightsSource`.

    Raises:
        WeightsError: a missing path, an unknown format, a folder of no known kind, or (with
            ``model_name``) weights that are known not to fit; the message says what to pass.

    Example:
        >>> weights_source("runs/flowers").kind
        'run_folder'
    """
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return WeightsSource("none")
    if isinstance(value, str) and value == "imagenet":
        if model_name is not None:
            imagenet.check_imagenet(model_name, None)
        return WeightsSource("imagenet")
    path = Path(value).expanduser()
    if path.is_dir():
        return _folder(path, model_name)
    if not path.exists():
        raise WeightsError(f"Weights file {path} does not exist. Pass {SUPPORTED}.")
    return WeightsSource("file", path, file_format(path), path)
