"""What a ``weights`` value names, decided without loading anything: the typed weights source.

A recipe's Plan calls :func:`weights_source` at ``restransfer validate``, and ``load_weights``
dispatches on the same result, so a weights value that cannot load is refused before any data
is read, by the same rule that loading applies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from restransfer.errors import WeightsError
from restransfer.models.specs import SPECS

# kind: what the value is; format (files only): which reader takes it.
KINDS = ("none", "imagenet", "file", "run_folder")
STATE_DICT_SUFFIXES = (".safetensors", ".npz", ".pth", ".pt", ".bin")
KERAS_H5_SUFFIXES = (".h5", ".hdf5")
SUPPORTED = (
    "'imagenet'; a keras.applications-format .h5; a torchvision/timm state dict (.safetensors, .npz, "
    ".pth, .pt, .bin); a restransfer checkpoint (.weights.h5 or .keras); or a run folder holding model.keras"
)


@dataclass(frozen=True)
class WeightsSource:
    """A classified weights value.

    Attributes:
        kind: ``none``, ``imagenet``, ``file`` or ``run_folder``.
        path: the absolute file or folder (``file``, ``run_folder``).
        format: for files, ``own_weights`` (.weights.h5), ``keras_h5``, ``keras_model`` (.keras)
            or ``state_dict`` (torchvision/timm).
    """

    kind: str
    path: Path | None = None
    format: str | None = None

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
            (ImageNet files exist, a run folder trained the same model, a state dict has names).
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
        _check_run_folder(path, model_name)
        return WeightsSource("run_folder", path, "keras_model")
    if not path.is_file():
        raise WeightsError(f"Weights {path} is not a regular file. Pass {SUPPORTED}.")
    kind = file_format(path)
    spec = SPECS.get(model_name) if model_name is not None else None
    if kind == "state_dict" and spec is not None and (spec.stem == "cifar" or not spec.residual):
        raise WeightsError(
            f"'{model_name}' has no torchvision/timm counterpart, so {path.name} cannot be mapped to it. "
            "Load it from a restransfer checkpoint (.weights.h5, .keras or a run folder) instead.")
    return WeightsSource("file", path, kind)


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
