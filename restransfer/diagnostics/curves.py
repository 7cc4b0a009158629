"""Training curves of several runs on one plot (the degradation experiment, recipe comparisons)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from restransfer.errors import ConfigError, DataError
from restransfer.files import FileReadError, read_text
from restransfer.training.plots import finish_figure

HISTORY_FILE = "history.csv"


def load_history(source: Any) -> dict[str, list[float]]:
    """A run's per-epoch metrics as ``{metric: [value per epoch]}``.

    Args:
        source: a ``{metric: values}`` mapping, a list of per-epoch dicts, a
            ``keras.callbacks.History``, a ``Run`` from ``restransfer.train``, a run folder holding ``history.csv``, or a CSV file.
            Epoch-numbering columns (``epoch``, ``phase``) are dropped: curves run over the
            rows in order, so a multi-phase run reads as one continuous curve.
    """
    if isinstance(source, Mapping):
        return {str(k): [float(v) for v in values] for k, values in source.items()}
    if isinstance(source, Sequence) and not isinstance(source, str) and all(isinstance(r, Mapping) for r in source):
        # One dict per epoch, as Run.history holds it.
        return _columns(source)
    history = getattr(source, "history", None)
    if isinstance(history, (Mapping, list)) and history:
        return load_history(history)
    if history is not None and hasattr(history, "history"):
        return load_history(history.history)
    run_dir = getattr(source, "run_dir", None)
    if run_dir is not None:
        return load_history(Path(run_dir))
    if isinstance(source, (str, Path)):
        return _read_csv(Path(source))
    raise ConfigError(
        f"Cannot read a training history from {type(source).__name__}; give a dict of lists, a "
        "keras History, a Run, a run folder or a history.csv path."
    )


def _read_csv(path: Path) -> dict[str, list[float]]:
    if path.is_dir():
        path = path / HISTORY_FILE
    if not path.is_file():
        raise DataError(f"No training history at {path}; a run folder writes {HISTORY_FILE} once an epoch ends.")
    try:
        text = read_text(path)
    except (OSError, ValueError) as error:
        reason = error.reason if isinstance(error, FileReadError) else error
        raise DataError(f"{path} cannot be read as a training history ({reason}).") from None
    return _columns(list(csv.DictReader(io.StringIO(text, newline=""))))


def _columns(rows) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key is None or key in ("epoch", "phase"):
                continue
            try:
                number = float(value) if value not in ("", None) else math.nan
            except (TypeError, ValueError):
                continue  # a text column (e.g. a phase name) is not a curve
            columns.setdefault(key, []).append(number)
    return columns


def plot_curves(runs: Mapping[str, Any], metrics: Sequence[str] = ("loss",), *, path: str | Path | None = None,
                title: str | None = None, log_y: bool = False):
    """One panel per metric, one line per run; optionally save a PNG.

    Args:
        runs: ``{label: history source}`` (see ``load_history``).
        metrics: metric names as logged, e.g. ``("loss", "val_accuracy")``.
        path: save the figure here (PNG by extension) when given.
        title: the figure's title.
        log_y: logarithmic y axis (training losses over many epochs).

    Returns:
        The ``matplotlib.figure.Figure``.

    Example:
        >>> plot_curves({"plain-20": "runs/plain20", "plain-56": "runs/plain56"},
        ...             metrics=("loss", "val_accuracy"), path="degradation.png")
    """
    from matplotlib.figure import Figure

    histories = {label: load_history(source) for label, source in runs.items()}
    for label, history in histories.items():
        missing = [m for m in metrics if m not in history]
        if missing:
            raise ConfigError(
                f"Run '{label}' has no metric {missing}; it logged {sorted(history)}."
            )
    fig = Figure(figsize=(5 * len(metrics), 3.6))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, history in histories.items():
            values = history[metric]
            ax.plot(range(1, len(values) + 1), values, marker="o" if len(values) < 15 else None,
                    markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return finish_figure(fig, path, title)



def train_curves(models: Mapping[str, Any], x_train, y_train, x_val=None, y_val=None, *, epochs: int = 5,
                 batch_size: int = 32, learning_rate: float = 0.05, seed: int = 0,
                 bn_momentum: float | None = 0.9, on_epoch: Any = None) -> dict[str, dict[str, list[float]]]:
    """Train several models the same way (same data order, SGD with momentum 0.9, cosine decay)
    and return their histories, for ``plot_curves``.

    A controlled experiment rather than a recipe: no augmentation, no run folder. Fine-tunes go
    through ``restransfer.train``.

    Args:
        models: ``{label: keras.Model}`` (uncompiled; each is compiled here).
        x_train, y_train: images (float32 0..255) and labels (one-hot or integer).
        x_val, y_val: optional validation data (adds ``val_loss`` and ``val_accuracy``).
        epochs, batch_size, learning_rate: the shared training setting.
        seed: the data order (the same for every model).
        bn_momentum: BatchNorm moving-average momentum (see ``compare_norms``); ``None`` keeps it.
        on_epoch: called as ``on_epoch(label, epoch, logs)`` after every epoch (progress).

    Returns:
        ``{label: {"loss": [...], "accuracy": [...], ...}}``.

    Example:
        >>> curves = train_curves({"plain-20": create_model("plain_cifar_resnet20"),
        ...                        "plain-56": create_model("plain_cifar_resnet56")}, x, y, epochs=10)
        >>> plot_curves(curves, metrics=("loss", "accuracy"))
    """
    import keras
    import numpy as np

    from restransfer.diagnostics.normalization import set_bn_momentum
    from restransfer.training.linear_probe import class_ids

    y_train = class_ids(y_train)
    validation = None if x_val is None else (np.asarray(x_val, "float32"), class_ids(y_val))
    steps = epochs * -(-len(y_train) // batch_size)
    histories = {}
    for label, model in models.items():
        keras.utils.set_random_seed(seed)
        if bn_momentum is not None:
            set_bn_momentum(model, bn_momentum)
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
        model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        callbacks = []
        if on_epoch is not None:
            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs, label=label: on_epoch(label, epoch, logs)))
        history = model.fit(np.asarray(x_train, "float32"), y_train, batch_size=batch_size, epochs=epochs,
                            validation_data=validation, shuffle=True, verbose=0, callbacks=callbacks)
        histories[label] = load_history(history)
    return histories
