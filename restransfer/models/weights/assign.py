"""Put named weights into a model: exact names and shapes for the backbone, a policy for the head.

Nothing is assigned until every check has passed, so a failed load leaves the model as it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import keras
import numpy as np

from restransfer.errors import WeightsError
from restransfer.models.stages import HEAD, layer_stage

STYLE_TRAITS = {
    "keras": "keras.applications v1: convolutions with biases, stride on the first 1x1",
    "torchvision": "torchvision/timm v1.5: convolutions without biases, stride on the 3x3",
}
_SHOWN = 5


def weights_style(tensors: Mapping[str, object]) -> str | None:
    """``"keras"`` when the convolutions carry biases, ``"torchvision"`` when not, None without convs."""
    convs = [key for key in tensors if key.rsplit("/", 1)[0].endswith("_conv")]
    if not convs:
        return None
    return "keras" if any(key.endswith("_conv/bias") for key in convs) else "torchvision"


def model_shapes(model: keras.Model) -> dict[str, tuple]:
    """``{"layer/variable": shape}`` for every weight of a model, without copying values."""
    return {f"{layer.name}/{w.name}": tuple(w.shape) for layer in model.layers for w in layer.weights}


def check_style(file_style: str | None, model_style: str | None, source: str) -> None:
    """Refuse weights of one style for a network of the other: the strides differ, not only biases."""
    if file_style and model_style and file_style != model_style:
        raise WeightsError(
            f"{source} holds {file_style}-style weights ({STYLE_TRAITS[file_style]}), but the model was "
            f"built with style='{model_style}' ({STYLE_TRAITS[model_style]}). Build it with "
            f"create_model(..., style='{file_style}') to load these weights."
        )


def _layer(key: str) -> str:
    return key.rsplit("/", 1)[0]


def _is_head(key: str) -> bool:
    # Only the classifier's own layers (heads.classifier names them); any other unknown name,
    # e.g. an unmapped state-dict key, must surface as unused rather than as a skippable head.
    if "/" not in key:
        return False
    layer = _layer(key)
    return layer_stage(layer) == HEAD and (layer == "predictions" or layer.startswith("head_"))


def _shown(keys: list[str], name_of: Callable[[str], str | None]) -> str:
    names = []
    for key in keys[:_SHOWN]:
        name = name_of(key) or key
        names.append(f"'{name}'" + (f" (-> {key})" if name != key else ""))
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(names) + more


def _classes(shapes: Mapping[str, tuple], keys: list[str]) -> str:
    return f"{shapes['predictions/bias'][0]} classes" if "predictions/bias" in keys else "a different head"


def _head_plan(model_slots: dict[str, tuple], file_shapes: dict[str, tuple], source: str) -> bool:
    """Whether to load the head; warn when it is skipped (it then keeps its fresh initialisation)."""
    model_head = [k for k in model_slots if _is_head(k)]
    file_head = [k for k in file_shapes if _is_head(k)]
    if not file_head and not model_head:
        return False
    if not file_head:
        warnings.warn(
            f"{source} has no classifier head; the model's head ({_classes(model_slots, model_head)}) "
            "keeps its fresh initialisation.", stacklevel=4,
        )
        return False
    if not model_head:
        warnings.warn(
            f"{source} has a classifier head ({_classes(file_shapes, file_head)}) but the model has none "
            "(include_top=False); skipping it.", stacklevel=4,
        )
        return False
    fits = set(model_head) == set(file_head) and all(
        file_shapes[k] == model_slots[k] for k in model_head
    )
    if not fits:
        warnings.warn(
            f"{source} has a classifier head with {_classes(file_shapes, file_head)}, the model one with "
            f"{_classes(model_slots, model_head)}: the head is not loaded and keeps its fresh "
            "initialisation (train it before use).", stacklevel=4,
        )
    return fits


def assign(model: keras.Model, tensors: Mapping[str, np.ndarray], *, source: str,
           origin: Mapping[str, str] | None = None, file_name: Callable[[str], str | None] | None = None,
           model_style: str | None = None) -> None:
    """Set ``model``'s weights from ``{"layer/variable": array}`` (Keras layout) or fail loudly.

    Args:
        model: a model built by restransfer (layer names as keras.applications).
        tensors: the weights to load.
        source: how to name the weights' origin in messages (usually the file path).
        origin: the file's own name for each key, when it differs (state-dict names).
        file_name: the name a missing key would have in the file, for messages.
        model_style: the style the model was built with; detected from its weights if None.

    Raises:
        WeightsError: on a style mismatch, a backbone tensor missing from the file or unused by
            the model, or a shape mismatch (naming the first such tensor and both shapes).
    """
    origin = origin or {}
    file_shapes = {key: tuple(value.shape) for key, value in tensors.items()}
    slots = model_shapes(model)
    model_style = model_style or weights_style(slots)
    check_style(weights_style(tensors), model_style, source)

    missing = [k for k in slots if not _is_head(k) and k not in tensors]
    unused = [k for k in tensors if not _is_head(k) and k not in slots]
    if missing or unused:
        parts = []
        if missing:
            shown = _shown(missing, file_name or (lambda key: None))
            parts.append(f"the model needs {len(missing)} tensors the file lacks: {shown}")
        if unused:
            parts.append(f"the file has {len(unused)} tensors the model cannot use: {_shown(unused, origin.get)}")
        raise WeightsError(
            f"{source} does not fit model '{model.name}': " + "; ".join(parts) + ". Check the model name "
            "(depth, ResNeXt groups and width) and options (norm='batch'; shortcut) match the weights."
        )
    for key, expected in slots.items():
        if not _is_head(key) and file_shapes[key] != expected:
            name = origin.get(key, key)
            raise WeightsError(
                f"{source} does not fit model '{model.name}': tensor '{name}'"
                + (f" (-> {key})" if name != key else "")
                + f" has shape {file_shapes[key]} (in Keras layout), the model expects {expected}."
            )

    load_head = _head_plan(slots, file_shapes, source)
    for layer in model.layers:
        if not layer.weights or (_is_head(f"{layer.name}/") and not load_head):
            continue
        layer.set_weights([
            np.asarray(tensors[f"{layer.name}/{w.name}"], dtype=keras.backend.standardize_dtype(w.dtype))
            for w in layer.weights
        ])
