"""Plots of the diagnostics; every function returns a matplotlib Figure and can save a PNG.

Figures are made without pyplot (no global figure state, no display needed) and saved by
``restransfer.training.plots.save_figure``, the package's one figure saver; matplotlib is
imported inside the functions so importing the diagnostics stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from restransfer.errors import ConfigError
from restransfer.training.plots import finish_figure, save_figure


def plot_gradient_flow(flow: Mapping[str, Mapping[str, float]], *, path: str | Path | None = None,
                       title: str | None = "Gradient norm per group (input side left)", log_y: bool = True):
    """One line per model: gradient norm of each layer/block/stage, from input to output.

    Args:
        flow: ``{label: {group: norm}}`` from ``gradient_flow`` (or several ``gradient_norms``).
        path: save a PNG here when given.
        log_y: logarithmic y axis; vanishing gradients span orders of magnitude.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8))
    ax = fig.subplots()
    names = [list(norms) for norms in flow.values()]
    same_groups = all(n == names[0] for n in names)
    for label, norms in flow.items():
        count = len(norms)
        # Models of different depth share the x axis as relative depth, input 0 to output 1.
        xs = range(count) if same_groups else [i / max(count - 1, 1) for i in range(count)]
        ax.plot(list(xs), list(norms.values()), marker=".", label=f"{label} ({count} groups)")
    if same_groups and names:
        step = max(1, len(names[0]) // 24)
        ax.set_xticks(range(0, len(names[0]), step), names[0][::step], rotation=70, fontsize=7)
        ax.set_xlabel("group, input side first")
    else:
        ax.set_xlabel("relative depth (0 = first group, 1 = head)")
    ax.set_ylabel("gradient L2 norm")
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, path, title)


def plot_stage_bars(tables: Mapping[str, Sequence], *, value: str = "params", path: str | Path | None = None,
                    title: str | None = None):
    """Grouped bars per stage: parameters (``value="params"``) or multiply-adds (``"macs"``).

    Args:
        tables: ``{label: stage_table(model)}``.
    """
    import numpy as np
    from matplotlib.figure import Figure

    if value not in ("params", "macs"):
        raise ConfigError(f"value must be 'params' or 'macs'. Received value={value!r}.")
    stages: list[str] = []
    for rows in tables.values():
        stages += [r.stage for r in rows if r.stage not in stages]
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    width = 0.8 / max(len(tables), 1)
    for i, (label, rows) in enumerate(tables.items()):
        by_stage = {r.stage: getattr(r, "trainable_params" if value == "params" else "macs") for r in rows}
        heights = [by_stage.get(s, 0) / 1e6 for s in stages]
        ax.bar(np.arange(len(stages)) + (i - (len(tables) - 1) / 2) * width, heights, width, label=label)
    ax.set_xticks(range(len(stages)), stages)
    ax.set_ylabel("parameters (M)" if value == "params" else "multiply-adds per image (M)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, path, title)


def plot_norm_comparison(results: Sequence, *, path: str | Path | None = None,
                         title: str | None = "Validation accuracy vs training batch size"):
    """Accuracy against batch size (log scale), one line per normalisation (``compare_norms``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    for norm in dict.fromkeys(r.norm for r in results):
        points = sorted((r.batch_size, r.accuracy) for r in results if r.norm == norm)
        ax.plot([b for b, _ in points], [a for _, a in points], marker="o", label=norm)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, path, title)


def plot_probe(probes: Mapping[str, Sequence], *, path: str | Path | None = None,
               title: str | None = "Linear-probe accuracy per stage"):
    """Accuracy (with its cross-validation spread) per stage, one line per model (``linear_probe``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    for label, rows in probes.items():
        ax.errorbar([r.stage for r in rows], [r.accuracy for r in rows], yerr=[r.std for r in rows],
                    marker="o", capsize=3, label=label)
    ax.set_xlabel("stage (frozen, global-average pooled)")
    ax.set_ylabel("cross-validated accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, path, title)


def plot_tradeoff(points: Mapping[str, tuple[float, float]], *, xlabel: str, ylabel: str,
                  path: str | Path | None = None, title: str | None = None, log_x: bool = False):
    """Labelled scatter plot, e.g. parameters vs multiply-adds or accuracy per configuration."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    for label, (x, y) in points.items():
        ax.scatter([x], [y])
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return finish_figure(fig, path, title)


__all__ = ["finish_figure", "plot_gradient_flow", "plot_norm_comparison", "plot_probe", "plot_stage_bars",
           "plot_tradeoff", "save_figure"]
