"""Temperature scaling (Guo et al. 2017): one temperature, fitted on held-out logits, folded into the head.

A fine-tuned network's softmax is over-confident. Dividing its logits by one temperature ``T``
fitted to minimise the negative log-likelihood of held-out predictions fixes most of it, and
never changes which class is predicted (``softmax(z / T)`` keeps the order of ``z``). The
temperature is folded into the classifier's ``predictions`` Dense layer (kernel and bias times
``1 / T``), so ``model.keras``, ``predict`` and every export return calibrated probabilities
with no extra layer: the layer stays float32 under mixed precision.

Example:
    >>> logits = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    >>> result = fit_temperature(logits, np.array([0, 1, 1]))
    >>> result.temperature > 1  # over-confident: one of three is wrong at p=0.98
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from restransfer.errors import ConfigError

# The recipe's ``calibration`` choices.
CALIBRATIONS = ("none", "temperature")
# Guo et al.'s number of equal-width confidence bins for the expected calibration error.
ECE_BINS = 15
# Bounds of the search on log T: T from 0.05 to 20 (a temperature at a bound is reported as such).
LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))
# The classifier layer that the temperature is folded into (restransfer.models.heads.classifier).
LOGITS_LAYER = "predictions"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL of ``labels`` under ``softmax(logits / temperature)``, computed stably (log-sum-exp)."""
    z = np.asarray(logits, np.float64) / temperature
    top = z.max(axis=-1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=-1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the image-weighted mean gap between confidence and accuracy over equal-width confidence bins.

    The top-1 confidence of each image falls into one of ``bins`` intervals ``((i-1)/bins, i/bins]``.
    """
    stats = reliability_bins(probabilities, labels, bins)
    counts = stats["count"]
    total = counts.sum()
    if total == 0:
        raise ConfigError("The expected calibration error needs at least one prediction.")
    gaps = np.abs(stats["accuracy"] - stats["confidence"])
    return float(np.sum(gaps * counts) / total)


def adaptive_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over equal-mass bins (Nixon et al. 2019): the images sorted by top-1 confidence, cut into
    ``bins`` groups of (nearly) equal size, each group's gap weighted by its size.

    With a few hundred images most equal-width bins of a confident model are empty or hold a
    handful of images, so the equal-width ECE jumps with single images; equal-mass bins do not.

    Example:
        >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.7, 0.3]])
        >>> round(adaptive_calibration_error(p, np.array([0, 1, 0, 0]), bins=2), 4)
        0.35
    """
    p = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    if not len(labels):
        raise ConfigError("The adaptive calibration error needs at least one prediction.")
    order = np.argsort(p.max(axis=-1), kind="stable")
    confidence = p.max(axis=-1)[order]
    correct = (p.argmax(axis=-1) == labels)[order].astype(np.float64)
    gaps = [abs(c.mean() - a.mean()) * len(c)
            for c, a in zip(np.array_split(confidence, bins), np.array_split(correct, bins)) if len(c)]
    return float(np.sum(gaps) / len(labels))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin: ``count``, mean ``confidence`` and ``accuracy`` (0 where a bin is empty), ``edges``."""
    p = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    confidence = p.max(axis=-1)
    correct = (p.argmax(axis=-1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 cannot occur for a softmax.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, np.bincount(which, confidence, bins) / count, 0.0)
        accuracy = np.where(count > 0, np.bincount(which, correct, bins) / count, 0.0)
    return {"count": count, "confidence": mean_conf, "accuracy": accuracy, "edges": edges}


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did on the predictions it was fitted on.

    Attributes:
        method: ``temperature``.
        temperature: ``T``; calibrated logits are the model's divided by it.
        ece_before, ece_after: expected calibration error (``bins`` bins) before and after.
        nll_before, nll_after: mean negative log-likelihood before and after.
        images: how many held-out predictions it was fitted on.
        bins: the number of ECE bins.
        fitted_on: which predictions (``validation``, ``out-of-fold`` ...).
        at_bound: the search ended at a bound of ``LOG_T_BOUNDS`` (too few or degenerate predictions).
        no_minimum: every held-out image is classified correctly, so the NLL falls without bound as
            ``T -> 0`` and has no minimum; the temperature stays 1.
    """

    method: str
    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    images: int
    bins: int = ECE_BINS
    fitted_on: str = "validation"
    at_bound: bool = False
    no_minimum: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.no_minimum:
            return (f"temperature 1 (unscaled): all {self.images} {self.fitted_on} images are classified correctly, "
                    "so the NLL falls without bound as the temperature goes to 0 and has no minimum to fit; "
                    f"ECE {self.ece_before:.4f}, NLL {self.nll_before:.4f}")
        bound = " (at the search bound: too few or too easy held-out images to fit it)" if self.at_bound else ""
        return (f"temperature {self.temperature:.4f} fitted on {self.images} {self.fitted_on} images{bound}; "
                f"ECE {self.ece_before:.4f} -> {self.ece_after:.4f}, NLL {self.nll_before:.4f} -> "
                f"{self.nll_after:.4f}")


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, fitted_on: str = "validation",
                    bins: int = ECE_BINS) -> Calibration:
    """The temperature minimising the NLL of ``labels`` under ``softmax(logits / T)`` (bounded search on log T).

    Args:
        logits: ``[N, C]`` pre-softmax outputs on held-out images.
        labels: ``[N]`` integer labels.
        fitted_on: what the images are, for the record.
        bins: ECE bins.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or not len(labels):
        raise ConfigError(f"Temperature scaling needs [N, C] logits and N labels; received logits of shape "
                          f"{logits.shape} and {len(labels)} labels.")
    if not np.all(np.isfinite(logits)):
        raise ConfigError("Temperature scaling received non-finite logits; the model's outputs hold NaN or inf.")
    top = logits.max(axis=-1)
    if np.all(logits[np.arange(len(labels)), labels] == top) and np.all((logits == top[:, None]).sum(-1) == 1):
        # Each image's NLL term, log(1 + sum_j exp((z_j - z_y) / T)) with every z_j < z_y, shrinks as
        # T -> 0: fitting would make the model as sharp as the search allows, on no evidence of that.
        ece, nll = expected_calibration_error(softmax(logits), labels, bins), negative_log_likelihood(logits, labels)
        return Calibration(method="temperature", temperature=1.0, ece_before=ece, ece_after=ece, nll_before=nll,
                           nll_after=nll, images=len(labels), bins=bins, fitted_on=fitted_on, no_minimum=True)
    found = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
                            bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    log_t = float(found.x)
    temperature = float(np.exp(log_t))
    at_bound = min(abs(log_t - LOG_T_BOUNDS[0]), abs(log_t - LOG_T_BOUNDS[1])) < 1e-3
    return Calibration(
        method="temperature", temperature=temperature,
        ece_before=expected_calibration_error(softmax(logits), labels, bins),
        ece_after=expected_calibration_error(softmax(logits / temperature), labels, bins),
        nll_before=negative_log_likelihood(logits, labels), nll_after=negative_log_likelihood(logits, labels, temperature),
        images=len(labels), bins=bins, fitted_on=fitted_on, at_bound=at_bound)


def logits_model(model):
    """A model sharing ``model``'s layers whose output is the classifier's logits (before the softmax)."""
    import keras

    return keras.Model(model.inputs, classifier_layer(model).output, name=f"{model.name}_logits")


def classifier_layer(model):
    """``model``'s ``predictions`` Dense layer, whose outputs are the logits.

    Raises:
        ConfigError: the model has none.
    """
    try:
        return model.get_layer(LOGITS_LAYER)
    except ValueError:
        raise ConfigError(f"Model {model.name} has no '{LOGITS_LAYER}' layer, the classifier that temperature "
                          "scaling and post-hoc logit adjustment change; build it with "
                          "restransfer.models.heads.classifier.") from None


def fold_temperature(model, temperature: float) -> None:
    """Divide the classifier's logits by ``temperature`` in place: its kernel and bias times ``1 / T``.

    The predicted class never changes; the layer keeps its dtype (float32 under mixed precision).
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"A temperature must be a positive number; received {temperature}.")
    layer = classifier_layer(model)
    layer.set_weights([np.asarray(w) / np.asarray(temperature, dtype=np.asarray(w).dtype)
                       for w in layer.get_weights()])


def plot_reliability(probabilities: Sequence[np.ndarray], labels: np.ndarray, path: Path,
                     names: Sequence[str] = ("before", "after"), title: str = "", bins: int = ECE_BINS) -> Path:
    """A reliability diagram: accuracy against confidence per bin, one bar set per ``probabilities``."""
    from matplotlib.figure import Figure

    from restransfer.training.plots import save_figure

    fig = Figure(figsize=(5 * len(probabilities), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(probabilities)))
    for ax, p, name in zip(axes, probabilities, names):
        stats = reliability_bins(p, labels, bins)
        centers = (stats["edges"][:-1] + stats["edges"][1:]) / 2
        filled = stats["count"] > 0
        width = 1.0 / bins
        ax.bar(centers[filled], stats["accuracy"][filled], width=width, edgecolor="black", label="accuracy")
        ax.bar(centers[filled], (stats["confidence"] - stats["accuracy"])[filled], bottom=stats["accuracy"][filled],
               width=width, color="tab:red", alpha=0.35, edgecolor="tab:red", label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k:", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-1 probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}: ECE {expected_calibration_error(p, labels, bins):.3f}")
        ax.legend(loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, Path(path))
    return Path(path)


__all__ = ["CALIBRATIONS", "Calibration", "ECE_BINS", "adaptive_calibration_error", "classifier_layer", "expected_calibration_error", "fit_temperature",
           "fold_temperature", "logits_model", "negative_log_likelihood", "plot_reliability", "reliability_bins",
           "softmax"]
