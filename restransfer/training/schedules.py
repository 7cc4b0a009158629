"""Learning-rate schedules with linear warmup, stepped per optimizer update."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

from restransfer.errors import OptionError

DECAYS = ("constant", "cosine", "linear", "step")


def check_schedule(decay: str, *, epochs: float, warmup_epochs: float = 0.0,
                   milestones: Sequence[float] = ()) -> None:
    """Refuse a schedule that cannot run as written (units: epochs of its phase).

    Raises:
        OptionError: naming ``name``, ``warmup_epochs`` or ``milestones``.
    """
    if decay not in DECAYS:
        raise OptionError("name", f"decay must be one of {list(DECAYS)}. Received {decay!r}.")
    if warmup_epochs > epochs:
        raise OptionError("warmup_epochs", f"warmup_epochs={warmup_epochs:g} is longer than the phase "
                                           f"({epochs} epochs); the rate would never reach its peak.")
    if milestones and decay != "step":
        raise OptionError("milestones", f"milestones apply to the step schedule, not {decay}.")
    if list(milestones) != sorted(milestones) or any(m <= 0 or m >= epochs for m in milestones):
        raise OptionError("milestones", f"milestones must be increasing epochs inside the phase (0, {epochs}); "
                                        f"received {list(milestones)}.")


@keras.saving.register_keras_serializable(package="restransfer")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to ``learning_rate``, then a decay over the remaining steps.

    The step is the optimizer's ``iterations``, so a resumed run continues the same curve.

    Args:
        learning_rate: the peak rate, reached at the end of warmup.
        total_steps: optimizer updates in the phase (warmup included).
        warmup_steps: updates of linear warmup from ``learning_rate / warmup_steps``.
        decay: ``"constant"``, ``"cosine"`` (to ``min_lr``), ``"linear"`` (to ``min_lr``) or
            ``"step"`` (times ``gamma`` at each of ``milestones``, given in steps).
        min_lr: the final rate of cosine and linear decay.
        milestones: steps at which ``"step"`` multiplies the rate by ``gamma``.
        gamma: the factor of ``"step"`` decay.

    Example:
        >>> schedule = WarmupSchedule(0.1, total_steps=100, warmup_steps=10)
        >>> round(float(schedule(9)), 4), round(float(schedule(99)), 4)
        (0.1, 0.0)
    """

    def __init__(self, learning_rate: float, total_steps: int, warmup_steps: int = 0,
                 decay: str = "cosine", min_lr: float = 0.0, milestones: Sequence[int] = (),
                 gamma: float = 0.1):
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}. Received decay={decay!r}")
        self.learning_rate = float(learning_rate)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.decay = decay
        self.min_lr = float(min_lr)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.learning_rate
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        if self.decay == "cosine":
            rate = self.min_lr + (peak - self.min_lr) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.decay == "linear":
            rate = peak - (peak - self.min_lr) * progress
        elif self.decay == "step":
            passed = sum(ops.cast(step >= m, "float32") for m in self.milestones) if self.milestones else 0.0
            rate = peak * ops.power(self.gamma, passed)
        else:
            rate = ops.cast(peak, "float32") + 0.0 * step
        if self.warmup_steps:
            # (step + 1): the first update already uses a non-zero rate.
            warm = peak * (step + 1.0) / float(self.warmup_steps)
            rate = ops.where(step < self.warmup_steps, warm, rate)
        return rate

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate, "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps, "decay": self.decay, "min_lr": self.min_lr,
            "milestones": self.milestones, "gamma": self.gamma,
        }
