"""The learning-rate range test: train briefly at an exponentially rising rate, watch the loss.

Smith (2017, "Cyclical Learning Rates for Training Neural Networks", section 3.3) trains a few
hundred steps while the rate grows from tiny to huge: the loss first stays flat (too small to
matter), then falls (useful rates), then blows up (too large). fastai's ``lr_find`` and
pytorch-lr-finder smooth the per-batch loss with a debiased exponential average and stop once
it exceeds a multiple of its minimum; the suggestion is the rate where the smoothed loss falls
fastest. The test moves the weights, so they (and BatchNorm statistics) are put back afterwards:
the model is the same before and after, and nothing is written anywhere.

Backend-agnostic: ``train_on_batch`` on a model that shares the given model's layers, so the
caller's model keeps its own compile state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from restransfer.errors import ConfigError
from restransfer.training.distribute import model_scope

# Smoothing of the loss curve (fastai's default); the first points mostly show the average warming up.
DEFAULT_BETA = 0.98


@dataclass
class LRFindResult:
    """What a range test measured.

    Attributes:
        learning_rates: the rate of each step.
        losses: the training loss of each step's batch.
        smoothed: the debiased exponential average of ``losses``.
        suggested: the rate where the smoothed loss falls fastest (per unit of log rate),
            before its minimum; None when it never fell.
        min_loss_lr: the rate at the smoothed loss's minimum (a rate 10x below it is the
            other common rule of thumb).
        stopped: why the test ended: ``"diverged"``, ``"non-finite loss"`` or ``"max_lr"``.
    """

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested: float | None
    min_loss_lr: float
    stopped: str

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)

    def plot(self, path: str | Path | None = None, *, title: str | None = "Learning-rate range test"):
        """The loss against the rate (log scale) with the suggestion marked; a matplotlib Figure.

        Made without pyplot, so no global backend or figure state changes; ``path`` saves a PNG.
        """
        from matplotlib.figure import Figure

        from restransfer.training.plots import finish_figure

        fig = Figure(figsize=(6, 3.8))
        ax = fig.subplots()
        ax.plot(self.learning_rates, self.losses, color="0.75", lw=1, label="batch loss")
        ax.plot(self.learning_rates, self.smoothed, lw=2, label="smoothed")
        if self.suggested is not None:
            ax.axvline(self.suggested, color="C3", ls="--", label=f"suggested {self.suggested:.2g}")
        ax.axvline(self.min_loss_lr, color="0.4", ls=":", label=f"minimum at {self.min_loss_lr:.2g}")
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if finite:  # the last, diverging points would squash the useful part of the curve
            low, high = min(finite), self.smoothed[0] if math.isfinite(self.smoothed[0]) else max(finite)
            ax.set_ylim(low - 0.1 * abs(high - low), max(high, low) + 0.5 * abs(high - low) + 1e-6)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return finish_figure(fig, path, title)


@keras.saving.register_keras_serializable(package="restransfer")
class ExponentialRange(keras.optimizers.schedules.LearningRateSchedule):
    """``min_lr * (max_lr / min_lr) ** (step / (steps - 1))``: from ``min_lr`` to ``max_lr`` in ``steps``."""

    def __init__(self, min_lr: float, max_lr: float, steps: int):
        self.min_lr, self.max_lr, self.steps = float(min_lr), float(max_lr), int(steps)

    def __call__(self, step):
        fraction = keras.ops.cast(step, "float32") / float(max(self.steps - 1, 1))
        return self.min_lr * keras.ops.power(self.max_lr / self.min_lr, fraction)

    def get_config(self) -> dict:
        return {"min_lr": self.min_lr, "max_lr": self.max_lr, "steps": self.steps}


def lr_find(model: keras.Model, data, *, optimizer: str | Callable = "adamw", min_lr: float = 1e-7,
            max_lr: float = 10.0, steps: int = 100, beta: float = DEFAULT_BETA, divergence: float = 4.0,
            loss="categorical_crossentropy", weight_decay: float = 0.0,
            lr_multipliers: Mapping[str, float] | None = None, optimizer_options: Mapping | None = None,
            jit_compile: bool = False) -> LRFindResult:
    """Run the range test on ``model`` (as frozen as it is) and put its weights back.

    Args:
        model: a functional Keras model; its ``trainable`` flags decide what the test trains.
            It is not compiled by the test, and its weights (BatchNorm statistics included) are
            the same afterwards.
        data: training batches ``(x, y)`` or ``(x, y, sample_weight)``: a ``tf.data.Dataset`` or any
            re-iterable of batches (cycled when shorter than ``steps``).
        optimizer: a name for ``restransfer.training.optimizers.build_optimizer`` (``sgd``,
            ``adam``, ``adamw``, ``rmsprop``), or ``callable(learning_rate) -> Optimizer``.
        min_lr: the first step's rate.
        max_lr: the rate of step ``steps`` (reached only if the loss has not diverged).
        steps: steps from ``min_lr`` to ``max_lr``.
        beta: smoothing of the loss (exponential average, debiased).
        divergence: stop when the smoothed loss exceeds this multiple of its minimum.
        loss: the loss, as ``compile`` takes it.
        weight_decay: decoupled weight decay of a named optimizer.
        lr_multipliers: variable path -> rate factor of a named optimizer (``stage_multipliers``).
        optimizer_options: further arguments of a named optimizer (``momentum`` ...).
        jit_compile: compile the step with XLA.

    Returns:
        An :class:`LRFindResult` (``.suggested``, ``.plot()``).

    Raises:
        ConfigError: bad bounds, or nothing of the model trains.

    Example:
        >>> result = lr_find(model, data.train, optimizer="adamw", steps=60)
        >>> result.suggested, result.plot("lr_find.png")
    """
    _check_bounds(min_lr, max_lr, steps, beta, divergence)
    if not model.trainable_weights:
        raise ConfigError(f"lr_find: nothing of model '{model.name}' trains (every layer is frozen); "
                          "unfreeze a stage first.")
    schedule = ExponentialRange(min_lr, max_lr, steps)
    with model_scope(model):
        if callable(optimizer):
            built = optimizer(schedule)
        else:
            from restransfer.training.optimizers import build_optimizer

            built = build_optimizer(optimizer, schedule, weight_decay=weight_decay, lr_multipliers=lr_multipliers,
                                    **dict(optimizer_options or {}))
        # A model over the same layers: the test compiles it, not the caller's model.
        trainer = keras.Model(model.inputs, model.outputs, name=f"{model.name}_lr_find")
        trainer.compile(optimizer=built, loss=loss, jit_compile=jit_compile)
    saved = [keras.ops.convert_to_numpy(v) for v in model.variables]
    rates, losses, smoothed = [], [], []
    average, best, stopped = 0.0, math.inf, "max_lr"
    try:
        for step, batch in zip(range(steps), _cycle(data)):
            rates.append(float(keras.ops.convert_to_numpy(schedule(step))))
            value = float(np.asarray(trainer.train_on_batch(*batch)).reshape(-1)[0])
            losses.append(value)
            if not math.isfinite(value):
                smoothed.append(math.inf)
                stopped = "non-finite loss"
                break
            average = beta * average + (1 - beta) * value
            smoothed.append(average / (1 - beta ** (step + 1)))
            best = min(best, smoothed[-1])
            if step > 0 and smoothed[-1] > divergence * best:
                stopped = "diverged"
                break
    finally:
        for variable, value in zip(model.variables, saved):
            variable.assign(value)
    if not rates:
        raise ConfigError("lr_find: the data yielded no batches.")
    return LRFindResult(learning_rates=rates, losses=losses, smoothed=smoothed,
                        suggested=suggest(rates, smoothed), min_loss_lr=rates[int(np.argmin(smoothed))],
                        stopped=stopped)


def suggest(rates: list[float], smoothed: list[float], skip: float = 0.1) -> float | None:
    """The rate of the steepest fall of ``smoothed`` against log rate, before its minimum.

    The first ``skip`` share of the points is left out: there the average is still warming up.
    """
    values = np.asarray(smoothed, np.float64)
    end = int(np.argmin(np.where(np.isfinite(values), values, np.inf)))
    start = min(int(len(values) * skip), max(end - 1, 0))
    if end - start < 2:
        return None
    slopes = np.gradient(values[start:end + 1], np.log(np.asarray(rates[start:end + 1])))
    steepest = int(np.argmin(slopes))
    return float(rates[start + steepest]) if slopes[steepest] < 0 else None


def _check_bounds(min_lr: float, max_lr: float, steps: int, beta: float, divergence: float) -> None:
    if not 0 < min_lr < max_lr:
        raise ConfigError(f"lr_find needs 0 < min_lr < max_lr. Received min_lr={min_lr}, max_lr={max_lr}.")
    if steps < 5:
        raise ConfigError(f"lr_find needs at least 5 steps to draw a curve. Received steps={steps}.")
    if not 0 <= beta < 1:
        raise ConfigError(f"lr_find: beta (loss smoothing) must be in [0, 1). Received beta={beta}.")
    if divergence <= 1:
        raise ConfigError(f"lr_find: divergence must be above 1 (a multiple of the best loss). "
                          f"Received divergence={divergence}.")


def _cycle(data) -> Iterator:
    """Batches of ``data`` again and again (NumPy on every backend)."""
    while True:
        batches: Iterable = data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else data
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            return
