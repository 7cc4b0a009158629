"""Optimizers with per-variable learning-rate multipliers and decoupled weight decay.

Discriminative fine-tuning (lower rates for early stages) cannot be done by scaling
gradients: Adam and AdamW divide the gradient by its own running RMS, so a gradient scaled
by 0.1 yields the same step. Instead each variable's *learning rate* is scaled inside
``update_step``, which every Keras optimizer calls once per variable on every backend.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
from keras import ops

from restransfer.errors import OptionError
from restransfer.models.stages import layer_stage

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
# The options of each optimizer that a recipe may set beyond learning_rate, epsilon and clipnorm.
OWN_OPTIONS = {"sgd": ("momentum", "nesterov"), "rmsprop": ("momentum",),
               "adam": ("beta_1", "beta_2"), "adamw": ("beta_1", "beta_2")}
# Norm scales/offsets and biases are not decayed (as timm's and torchvision's recipes do).
NO_DECAY_SUFFIXES = ("gamma", "beta", "bias")


class _GroupedRates:
    """Mixin: ``lr_multipliers`` maps variable paths to a factor on the learning rate.

    ``decoupled_weight_decay`` shrinks each decayed variable by ``rate * multiplier * decay``
    per step (AdamW-style, as Keras 3 applies ``weight_decay`` for every optimizer), so the
    decay follows the variable's scaled rate like a PyTorch parameter group.
    """

    def __init__(self, *args, lr_multipliers: Mapping[str, float] | None = None,
                 decoupled_weight_decay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}
        self.decoupled_weight_decay = float(decoupled_weight_decay)

    def build(self, variables):
        super().build(variables)
        self._rate_factors = [self.lr_multipliers.get(v.path, 1.0) for v in variables]
        self._decays = [
            self.decoupled_weight_decay if not v.path.endswith(NO_DECAY_SUFFIXES) else 0.0
            for v in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        factor = self._rate_factors[index]
        if factor != 1.0:
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), factor)
        decay = self._decays[index]
        if decay:
            step = ops.multiply(ops.cast(learning_rate, variable.dtype), decay)
            self.assign_sub(variable, ops.multiply(variable, step))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers,
                "decoupled_weight_decay": self.decoupled_weight_decay}


@keras.saving.register_keras_serializable(package="restransfer")
class SGD(_GroupedRates, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with per-variable rates and decoupled weight decay."""


@keras.saving.register_keras_serializable(package="restransfer")
class Adam(_GroupedRates, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with per-variable rates; with weight decay it is AdamW."""


@keras.saving.register_keras_serializable(package="restransfer")
class RMSprop(_GroupedRates, keras.optimizers.RMSprop):
    """``keras.optimizers.RMSprop`` with per-variable rates and decoupled weight decay."""


_CLASSES = {"sgd": SGD, "adam": Adam, "adamw": Adam, "rmsprop": RMSprop}


def stage_multipliers(model: keras.Model, multipliers: Mapping[str, float]) -> dict[str, float]:
    """Map each trainable variable's path to its stage's learning-rate multiplier.

    Example:
        >>> stage_multipliers(model, {"conv3": 0.1})["conv3_block1_1_conv/kernel"]
        0.1
    """
    result = {}
    for layer in model.layers:
        factor = multipliers.get(layer_stage(layer.name))
        if factor is not None:
            for variable in layer.trainable_weights:
                result[variable.path] = float(factor)
    return result


def check_optimizer_options(name: str, options: Mapping[str, object]) -> None:
    """Refuse an unknown optimizer, or an option that belongs to another optimizer.

    Raises:
        OptionError: naming the option and the optimizers it applies to.
    """
    if name not in OPTIMIZERS:
        raise OptionError("name", f"optimizer must be one of {list(OPTIMIZERS)}. Received {name!r}.")
    for key, value in options.items():
        owners = [n for n, own in OWN_OPTIONS.items() if key in own]
        if owners and name not in owners and value not in (None, False):
            raise OptionError(key, f"{key} does not apply to optimizer {name}; it applies to {'/'.join(owners)}.")


def build_optimizer(name: str, learning_rate, *, weight_decay: float = 0.0,
                    lr_multipliers: Mapping[str, float] | None = None, **options) -> keras.optimizers.Optimizer:
    """An optimizer by name: ``sgd``, ``adam``, ``adamw`` (Adam + decoupled decay), ``rmsprop``.

    Args:
        name: the optimizer's name.
        learning_rate: a float or a ``LearningRateSchedule``.
        weight_decay: decoupled decay per step, times the (scaled) learning rate.
        lr_multipliers: variable path -> factor on the learning rate (see ``stage_multipliers``).
        **options: the Keras optimizer's own arguments (``momentum``, ``nesterov``,
            ``beta_1``, ``beta_2``, ``epsilon``, ``clipnorm`` ...).
    """
    check_optimizer_options(name, options)
    return _CLASSES[name](learning_rate=learning_rate, lr_multipliers=lr_multipliers,
                          decoupled_weight_decay=weight_decay, **options)
