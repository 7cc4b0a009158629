"""Training curves and confusion matrices as PNG files, and the package's one way to save a figure.

Figures are drawn on ``matplotlib.figure.Figure`` directly, never through pyplot, so saving
them needs no display and leaves a notebook's inline backend alone. Every figure the package
writes goes through :func:`save_figure`: atomically, so a folder never holds half a picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from restransfer.files import atomic_write


def plot_history(history: list[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy (a multi-label run's: mean average precision) per epoch, train and validation;
    dotted lines where a phase starts."""
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    score = "map" if any("val_map" in row for row in history) else "accuracy"
    for ax, metric in zip(axes, ("loss", score)):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [row.get(prefix + metric) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", markersize=3,
                        label=("validation " if prefix else "train ") + metric)
        for i in range(1, len(history)):
            if history[i]["phase"] != history[i - 1]["phase"]:
                ax.axvline(history[i]["epoch"] - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> Path:
    """A confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.5 * len(class_names) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ConfusionMatrixDisplay(matrix, display_labels=list(class_names)).plot(
        ax=ax, colorbar=False, xticks_rotation="vertical" if len(class_names) > 8 else "horizontal",
        include_values=len(class_names) <= 30)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure atomically (format from the extension, PNG without one); returns the path.

    The parent folder is created; a reader of ``path`` sees the old file or the new one, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix[1:].lower() or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format=fmt, bbox_inches="tight"))
    return path


def finish_figure(fig, path: str | Path | None, title: str | None):
    """Title, tight layout, and the file (:func:`save_figure`) when ``path`` is given; returns the figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    _displayable_in_notebooks(fig)
    return fig


def _displayable_in_notebooks(fig) -> None:
    """Show the figure in a Jupyter kernel: drawn without pyplot, no inline backend shows it at the cell's end."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
        from IPython.display import Image, display
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):
        display(Image(print_figure(fig, "png")))
