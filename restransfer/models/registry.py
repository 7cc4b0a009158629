"""Model names to builders: ``list_models()`` and ``create_model(name, ...)``."""

from __future__ import annotations

import fnmatch
import inspect

import keras

from restransfer.errors import ConfigError, did_you_mean
from restransfer.models.resnet import build_resnet
from restransfer.models.specs import SPECS

_OPTIONS = [p for p in inspect.signature(build_resnet).parameters if p not in ("spec", "name")]


def list_models(pattern: str = "*") -> list[str]:
    """Names of every buildable model, optionally filtered by a glob pattern.

    Example:
        >>> list_models("resnext*")
        ['resnext101_32x8d', 'resnext101_64x4d', 'resnext50_32x4d']
    """
    return sorted(n for n in SPECS if fnmatch.fnmatch(n, pattern))


def check_model_name(name: str) -> None:
    """Raise a ConfigError naming the nearest valid names when ``name`` is unknown."""
    if name not in SPECS:
        raise ConfigError(
            f"Unknown model '{name}'." + did_you_mean(name, SPECS)
            + " See `restransfer models list` for all names."
        )


def default_style(weights, model_name: str | None = None) -> str:
    """The style a model is built in when none is given: ``keras`` for the ImageNet files, else torchvision.

    A model whose weights exist in one style only (ResNet-D and SE: torchvision; ResNet V2:
    keras) takes that one; ``model_name`` None means a model of both styles.
    """
    styles = SPECS[model_name].styles if model_name in SPECS else ("torchvision", "keras")
    imagenet = (isinstance(weights, str) and weights == "imagenet") or getattr(weights, "kind", None) == "imagenet"
    return "keras" if imagenet and "keras" in styles else styles[0]


def create_model(name: str, *, num_classes: int | None = None, weights: str | None = None,
                 style: str | None = None, **options) -> keras.Model:
    """Build a named model and optionally load weights.

    Args:
        name: a name from ``list_models()``, e.g. ``"resnet50"`` or ``"resnext50_32x4d"``.
        num_classes: classes of the head (default 1000; 10 for CIFAR ResNets).
        weights: ``None``, ``"imagenet"`` (keras.applications files, ``style="keras"``), or a
            path to a keras .h5, a torchvision/timm state dict (.safetensors, .npz, .pth) or a
            restransfer checkpoint.
        style: ``"torchvision"`` (default) or ``"keras"``; ``weights="imagenet"`` implies keras.
            ResNet-D and SE exist in torchvision style only, ResNet V2 in keras style only.
        **options: see ``restransfer.models.resnet.build_resnet`` (``include_top``,
            ``input_shape``, ``pooling``, ``norm``, ``output_stride``, ``zero_init_residual``,
            ``drop_path_rate``, ``dropout``, ``preprocessing`` ...).

    Example:
        >>> model = create_model("resnet18", num_classes=5, input_shape=(64, 64, 3))
        >>> model.output_shape
        (None, 5)
    """
    check_model_name(name)
    for key in options:
        if key not in _OPTIONS:
            raise ConfigError(
                f"create_model got an unknown option '{key}'." + did_you_mean(key, _OPTIONS)
                + f" Options: {sorted(_OPTIONS)}."
            )
    style = style or default_style(weights, name)
    model = build_resnet(SPECS[name], name=name, num_classes=num_classes, style=style, **options)
    if weights is not None:
        from restransfer.models.weights import load_weights

        load_weights(model, weights, model_name=name, style=style)
    return model
