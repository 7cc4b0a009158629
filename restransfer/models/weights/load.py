"""Load pretrained weights into a model built by ``create_model``.

Weights load by exact layer and tensor name, never by position: a tensor the model lacks, a
tensor the file lacks or a shape that differs stops the load with a :class:`WeightsError`
naming it, before anything is assigned. Only the classifier head is allowed to differ; it is
then skipped with a warning and keeps its fresh initialisation.

The two ResNet lineages compute different functions with the same tensors (keras.applications
v1 strides on the first 1x1 convolution and has conv biases; torchvision/timm v1.5 strides on
the 3x3), so weights load only into a network of their own ``style``. Networks whose tensors
equal another's but which compute something else (timm's anti-aliased ResNets) can only be
told apart by a hub folder's ``config.json``, which is checked.

The code uses NumPy and ``layer.set_weights`` only, so it runs on every Keras backend.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import keras

from restransfer.errors import WeightsError
from restransfer.models.specs import SPECS
from restransfer.models.weights import imagenet, keras_hub, readers
from restransfer.models.weights.assign import assign, check_style, model_shapes, weights_style
from restransfer.models.weights.families import keras_layout, near_miss_hint, state_dict_layout
from restransfer.models.weights.source import WeightsSource, weights_source
from restransfer.models.weights.torch_names import has_avg_down, torch_name


def load_weights(model: keras.Model, weights: str | os.PathLike | WeightsSource, *, model_name: str | None = None,
                 style: str | None = None) -> None:
    """Load pretrained weights into a model built by ``create_model``.

    Args:
        model: the network; its layer names follow keras.applications (``conv2_block1_1_conv``).
        weights: a :class:`WeightsSource` from :func:`weights_source`, or one of
            - ``"imagenet"``: the published keras.applications file for ``resnet50``,
              ``resnet101``, ``resnet152`` (``style="keras"``) or their V2, downloaded once through
              ``keras.utils.get_file`` into ``~/.keras/models`` (``$KERAS_HOME``) and used
              offline from there; ``include_top=False`` takes the ``_notop`` file.
            - a keras.applications-format ``.h5`` (by layer name; Keras 2 and 3 files).
            - a torchvision or timm ResNet/ResNeXt state dict: ``.safetensors`` or ``.npz``
              (read without PyTorch), or ``.pth``/``.pt``/``.bin`` (needs the ``torch`` extra;
              read with ``weights_only=True``). ``module.``/``model.`` key prefixes are removed.
            - a timm/Hugging Face hub folder (``config.json`` + ``model.safetensors`` or
              ``pytorch_model.bin``): a state dict whose ``architecture`` must be ``model_name``.
            - a KerasHub ResNet preset folder (``config.json`` + ``model.weights.h5``), read
              through KerasHub (needs ``keras-hub``).
            - a restransfer checkpoint: ``.weights.h5`` (the identical architecture only) or
              ``.keras`` (safe mode; weights copied by layer name), or a run folder whose
              ``model.keras`` is used. The CIFAR ResNets and the plain twins have no standard
              torchvision names, so they load from these checkpoints only.
        model_name: the registry name, for messages and the ImageNet file; ``model.name`` if None.
        style: the style the model was built with; detected from its conv biases if None.

    Raises:
        WeightsError: the file is missing or unreadable, of the other style, or does not fit
            (the message names the first offending tensor and the shapes).

    Warns:
        UserWarning: when the classifier head is skipped (another class count, or no top).

    Example:
        >>> model = create_model("resnet50", num_classes=5, weights="resnet50_tv.safetensors")
    """
    model_name = model_name or model.name
    source = weights if isinstance(weights, WeightsSource) else weights_source(
        weights, model_name=model_name if model_name in SPECS else None, style=style)
    if source.kind == "none":
        return
    if source.kind == "imagenet":
        _load_imagenet(model, model_name, style)
        return
    path, kind = source.weights_file, source.format
    if source.kind == "keras_hub_preset":
        tensors = keras_hub.read_preset(source.path, readers.read_json(source.path / "config.json"))
        assign(model, tensors, source=str(source.path), model_style=style)
    elif kind == "own_weights":
        _load_own_weights(model, path, style)
    elif kind == "keras_h5":
        _load_keras_h5(model, path, model_name, style)
    elif kind == "keras_model":
        assign(model, readers.read_keras_model(path), source=str(path), model_style=style)
    else:
        _load_state_dict(model, path, model_name, style)


def _load_imagenet(model: keras.Model, model_name: str, style: str | None) -> None:
    imagenet.check_imagenet(model_name, style or weights_style(model_shapes(model)))
    include_top = any(layer.name == "predictions" for layer in model.layers)
    path = imagenet.fetch(model_name, include_top)
    assign(model, readers.read_keras_h5(path), source=f"ImageNet weights {path.name}", model_style="keras")


def _load_state_dict(model: keras.Model, path: Path, model_name: str, style: str | None) -> None:
    state = readers.read_state_dict(path)
    tensors, origin = readers.from_state_dict(state)
    avg_down = has_avg_down(state)
    try:
        assign(model, tensors, source=str(path), origin=origin, model_style=style,
               file_name=lambda key: torch_name(key, avg_down=avg_down))
    except WeightsError as error:
        layout = state_dict_layout({k: v.shape for k, v in state.items()})
        raise WeightsError(str(error) + near_miss_hint(layout, model_name, "torchvision")) from None


def _load_keras_h5(model: keras.Model, path: Path, model_name: str, style: str | None) -> None:
    tensors = readers.read_keras_h5(path)
    try:
        assign(model, tensors, source=str(path), model_style=style)
    except WeightsError as error:
        layout = keras_layout({k: v.shape for k, v in tensors.items()})
        raise WeightsError(str(error) + near_miss_hint(layout, model_name, "keras")) from None


def _load_own_weights(model: keras.Model, path: Path, style: str | None) -> None:
    model_style = style or weights_style(model_shapes(model))
    check_style(readers.own_weights_h5_style(path), model_style, str(path))
    # Keras matches a .weights.h5 by position and may stop halfway; load a twin first so a
    # failure leaves the caller's model untouched.
    twin = keras.models.clone_model(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            twin.load_weights(path)
    except Exception as error:  # Keras raises ValueError with a long description
        raise WeightsError(
            f"{path} does not fit model '{model.name}': {_first_sentences(error)} A .weights.h5 file "
            "loads only into the architecture it was saved from (same name, options and num_classes); "
            "to change the head, load the run's model.keras (or the run folder) instead."
        ) from None
    model.set_weights(twin.get_weights())




def _first_sentences(error: Exception) -> str:
    """Keras' loading error up to its list of objects: its first line ends in "Example error
    message for object <Dense ...>:" and the example is on the next line."""
    from restransfer.errors import as_sentence

    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return as_sentence(" ".join(lines[:2] if len(lines) > 1 and lines[0].endswith(":") else lines[:1]))


__all__ = ["load_weights"]
