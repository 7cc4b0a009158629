"""The models a benchmark compares: ours from the registry, the keras.applications references."""

from __future__ import annotations

import contextlib

import keras

from restransfer.diagnostics.complexity import layer_macs, stage_table

# keras.applications has ResNet v1 at depths 50/101/152 only; every deep model is compared with
# the reference of its depth (the same architecture only for resnet50/101/152 in keras style).
REFERENCE_FOR = {
    "resnet50": "ResNet50",
    "resnext50_32x4d": "ResNet50",
    "wide_resnet50_2": "ResNet50",
    "resnet101": "ResNet101",
    "resnext101_32x8d": "ResNet101",
    "resnext101_64x4d": "ResNet101",
    "wide_resnet101_2": "ResNet101",
    "resnet152": "ResNet152",
}
SAME_ARCHITECTURE = {"resnet50", "resnet101", "resnet152"}


@contextlib.contextmanager
def precision_scope(precision: str):
    """Build layers under the dtype policy ``precision`` as the recipe engine does."""
    from restransfer.training.precision import PRECISIONS, dtype_policy

    if precision not in PRECISIONS:
        from restransfer.errors import ConfigError

        raise ConfigError(f"precision must be one of {list(PRECISIONS)}. Received precision={precision!r}.")
    with dtype_policy(precision):
        yield


def build_ours(name: str, *, image_size: int, num_classes: int, style: str, precision: str) -> keras.Model:
    """A restransfer model as recipes build it, without the Preprocess layer (as the reference)."""
    from restransfer.models.registry import create_model

    with precision_scope(precision):
        return create_model(name, num_classes=num_classes, style=style,
                            input_shape=(image_size, image_size, 3))


def build_reference(name: str, *, image_size: int, num_classes: int, precision: str) -> keras.Model:
    """``keras.applications.<name>`` with random weights and a ``num_classes`` head."""
    with precision_scope(precision):
        return getattr(keras.applications, name)(
            weights=None, input_shape=(image_size, image_size, 3), classes=num_classes
        )


def macs_per_image(model: keras.Model) -> int:
    """Multiply-adds of one image's forward pass: the stage table's total for our models."""
    try:
        return sum(row.macs for row in stage_table(model))
    except Exception:  # a reference's layer names do not follow our stages; count layer by layer
        return sum(layer_macs(layer) for layer in model._flatten_layers(include_self=False))
