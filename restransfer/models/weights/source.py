"""What a ``weights`` value names, decided without loading anything: the typed weights source.

A recipe's Plan calls :func:`weights_source` at ``restransfer validate``, and ``load_weights``
dispatches on the same result, so a weights value that cannot load is refused before any data
is read, by the same rule that loading applies. It builds no model, imports neither Keras nor
TensorFlow and reads at most a folder's ``config.json`` (or a run's ``run.json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from restransfer.errors import WeightsError
from restransfer.models.specs import SPECS
from restransfer.models.weights import keras_hub as keras_hub_presets
from restransfer.models.weights.families import check_hub_architecture
from restransfer.models.weights.readers import read_json

# kind: what the value is; format: which reader takes its weights file.
KINDS = ("none", "imagenet", "file", "run_folder", "hub_folder", "keras_hub_preset")
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # as timm's save_for_hf writes them
# timm config.json model_args that leave the network as its architecture name builds it.
_HUB_HARMLESS_ARGS = {"in_chans", "num_classes", "global_pool", "drop_rate", "drop_path_rate", "output_stride"}
STATE_DICT_SUFFIXES = (".safetensors", ".npz", ".pth", ".pt", ".bin")
KERAS_H5_SUFFIXES = (".h5", ".hdf5")
SUPPORTED = (
    "'imagenet'; a keras.applications-format .h5; a torchvision/timm state dict (.safetensors, .npz, "
    ".pth, .pt, .bin); a restransfer checkpoint (.weights.h5 or .keras); a run folder holding model.keras; "
    "a timm/Hugging Face hub folder (config.json + model.safetensors); or a KerasHub ResNet preset folder "
    "(config.json + model.weights.h5)"
)


@dataclass(frozen=True)
class WeightsSource:
    """A classified weights value.

    Attributes:
        kind: ``none``, ``imagenet``, ``file``, ``run_folder``, ``hub_folder`` (timm / Hugging
            Face: ``config.json`` + ``model.safetensors``) or ``keras_hub_preset``.
        path: the absolute file or folder.
        format: the reader of the weights file: ``own_weights`` (.weights.h5), ``keras_h5``,
            ``keras_model`` (.keras, a run folder), ``state_dict`` (torchvision/timm, a hub
            folder) or ``keras_hub`` (a preset).
        weights_file: the file that holds the tensors (the path itself for a file).
        architecture: a hub folder's timm architecture (``config.json``); for a KerasHub
            preset, the restransfer model it equals.
    """

    kind: str
    path: Path | None = None
    format: str | None = None
    weights_file: Path | None = None
    architecture: str | None = None

    @property
    def value(self) -> str | None:
        """What ``create_model(weights=...)`` takes: ``None``, ``"imagenet"`` or the path."""
        if self.kind == "none":
            return None
        return "imagenet" if self.kind == "imagenet" else str(self.path)

    def __str__(self) -> str:
        if self.kind == "none":
            return "none (random initialisation)"
        if self.kind == "imagenet":
            return "imagenet (keras.applications)"
        if self.kind == "hub_folder":
            return f"timm hub folder ({self.architecture}) {self.path}"
        if self.kind == "keras_hub_preset":
            return f"KerasHub preset ({self.architecture}) {self.path}"
        return f"{'run folder' if self.kind == 'run_folder' else self.format.replace('_', ' ')} {self.path}"


def file_format(path: Path) -> str:
    """The reader a weights file goes to, by its name; ``WeightsError`` for anything else."""
    name = path.name.lower()
    if name.endswith(".weights.h5"):
        return "own_weights"
    if name.endswith(KERAS_H5_SUFFIXES):
        return "keras_h5"
    if name.endswith(".keras"):
        return "keras_model"
    if name.endswith(STATE_DICT_SUFFIXES):
        return "state_dict"
    raise WeightsError(f"Unknown weights format '{path.suffix or path.name}' of {path}. Supported: {SUPPORTED}.")


def weights_source(value: str | os.PathLike | None, *, model_name: str | None = None,
                   style: str | None = None) -> WeightsSource:
    """Classify a weights value and check that it can load into ``model_name`` (no model is built).

    Args:
        value: ``None``/``"none"``, ``"imagenet"``, a weights file or a run folder.
        model_name: the registry name the weights are for; enables the checks that need it
            (ImageNet files exist, a run folder trained the same model, a state dict has names,
            a hub folder's architecture and a KerasHub preset's network are this model).
        style: the style the model is built with, for ``imagenet``.

    Raises:
        WeightsError: the path is missing, of an unknown format, or cannot fit the model.

    Example:
        >>> weights_source("imagenet", model_name="resnet50").kind
        'imagenet'
    """
    from restransfer.models.weights import imagenet

    if value is None or value == "none":
        return WeightsSource("none")
    if value == "imagenet":
        if model_name is not None:
            imagenet.check_imagenet(model_name, style)
        return WeightsSource("imagenet")
    path = Path(value).expanduser().resolve()
    if not path.exists():
        raise WeightsError(f"Weights {value} do not exist (looked for {path}). Pass {SUPPORTED}.")
    if path.is_dir():
        return _folder(path, model_name)
    if not path.is_file():
        raise WeightsError(f"Weights {path} is not a regular file. Pass {SUPPORTED}.")
    kind = file_format(path)
    if kind == "state_dict":
        _check_hub_file(path, model_name)
    spec = SPECS.get(model_name) if model_name is not None else None
    if kind == "state_dict" and spec is not None and (spec.stem == "cifar" or not spec.residual):
        raise WeightsError(
            f"'{model_name}' has no torchvision/timm counterpart, so {path.name} cannot be mapped to it. "
            "Load it from a restransfer checkpoint (.weights.h5, .keras or a run folder) instead.")
    return WeightsSource("file", path, kind, path)


def _folder(path: Path, model_name: str | None) -> WeightsSource:
    config_path = path / "config.json"
    if not (path / "model.keras").is_file() and not (path / "run.json").is_file() and config_path.is_file():
        config = read_json(config_path)
        if "architecture" in config:
            return _hub_folder(path, config, model_name)
        if keras_hub_presets.is_keras_hub_config(config):
            return _keras_hub_preset(path, config, model_name)
        if "model_type" in config or "architectures" in config:
            raise WeightsError(
                f"Weights {path} is a Hugging Face transformers folder (model_type={config.get('model_type')!r}); "
                "its tensor names are transformers', not timm's. Use the timm/<name> folder of the same "
                "network, which restransfer reads."
            )
    _check_run_folder(path, model_name)
    return WeightsSource("run_folder", path, "keras_model", path / "model.keras")


def _hub_folder(folder: Path, config: dict, model_name: str | None) -> WeightsSource:
    architecture = _hub_architecture(folder, config)
    weights = next((folder / name for name in HUB_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise WeightsError(
            f"{folder} is a timm/Hugging Face hub folder ({architecture!r}) without its weights: expected "
            f"{' or '.join(HUB_WEIGHTS)} next to config.json (download the whole folder)."
        )
    _check_hub_config(folder, config, architecture, model_name, str(folder))
    return WeightsSource("hub_folder", folder, "state_dict", weights, architecture.split(".", 1)[0])


def _check_hub_file(path: Path, model_name: str | None) -> None:
    """A state dict taken out of a hub folder is refused as that folder would be.

    Its tensor names alone cannot tell timm's ``resnetaa50`` from ``resnet50``; the folder's
    ``config.json`` can.
    """
    config_path = path.parent / "config.json"
    if not config_path.is_file():
        return
    config = read_json(config_path)
    if "architecture" not in config:
        return
    architecture = _hub_architecture(path.parent, config)
    _check_hub_config(path.parent, config, architecture, model_name,
                      f"{path} (in a hub folder whose config.json names {architecture!r})")


def _hub_architecture(folder: Path, config: dict) -> str:
    architecture = config["architecture"]
    if not isinstance(architecture, str) or not architecture:
        raise WeightsError(f"{folder / 'config.json'} has architecture={architecture!r}; expected a timm model name.")
    return architecture


def _check_hub_config(folder: Path, config: dict, architecture: str, model_name: str | None, source: str) -> None:
    unusual = sorted(set(config.get("model_args") or {}) - _HUB_HARMLESS_ARGS)
    if unusual:
        raise WeightsError(
            f"{folder / 'config.json'} builds {architecture!r} with model_args {unusual}, which change the "
            "network beyond what its name says; restransfer builds each name as timm registers it."
        )
    if model_name is not None:
        check_hub_architecture(architecture, model_name, source)


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


def _check_run_folder(path: Path, model_name: str | None) -> None:
    from restransfer.runs import RunFolder

    folder = RunFolder(path)
    info = folder.info() or {}
    if not folder.model_file.is_file():
        what = f"a run folder without model.keras (status: {info.get('status')})" if info else \
            "a folder, but not a run folder (no run.json, no model.keras)"
        raise WeightsError(f"Weights {path} is {what}. Finish that run first (rerun its train command to "
                           f"resume it), or pass {SUPPORTED}.")
    trained = info.get("model")
    if model_name is not None and trained not in (None, model_name):
        raise WeightsError(f"Run folder {path} trained {trained}, but the model is {model_name}; weights "
                           "load only into the same architecture.")
