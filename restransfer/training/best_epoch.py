"""Which epoch a run keeps, and when a phase stops early: both read from the epoch history.

The monitor is a validation metric of every epoch's history row. ``checkpoint.keep: best`` keeps
the epoch with its best value over the whole run (strictly better than every earlier one);
``early_stopping`` stops a phase when the best value of that phase's epochs is older than
``patience`` epochs, improvements of at most ``min_delta`` not counting. Both are computed from the
history a checkpoint stores, so a run killed and resumed decides exactly as one that ran through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MONITORS = ("auto", "val_accuracy", "val_balanced_accuracy", "val_map", "val_loss")
# The monitors of each task (`restransfer.training.task`): a multi-label run has no accuracy.
TASK_MONITORS = {"single_label": ("val_accuracy", "val_balanced_accuracy", "val_loss"),
                 "multi_label": ("val_map", "val_loss")}
KEEPS = ("best", "last")
# Metrics where lower is better; every other monitor is higher-is-better.
_LOWER_IS_BETTER = ("val_loss",)


def checkpoint_monitor(monitor: str, *, class_weighted: bool, task: str = "single_label") -> tuple[str, str]:
    """The metric ``checkpoint.monitor`` stands for, and why.

    Example:
        >>> checkpoint_monitor("auto", class_weighted=True)
        ('val_balanced_accuracy', 'auto: the classes are balanced (class weights or logit adjustment)')
        >>> checkpoint_monitor("val_loss", class_weighted=True)[0]
        'val_loss'
    """
    if monitor != "auto":
        return monitor, f"checkpoint.monitor: {monitor}"
    if task == "multi_label":
        return "val_map", "auto: task multi_label (mean average precision over labels)"
    if class_weighted:
        return "val_balanced_accuracy", "auto: the classes are balanced (class weights or logit adjustment)"
    return "val_accuracy", "auto: the classes are not balanced by weights or logit adjustment"


def monitor_problem(monitor: str, task: str) -> str | None:
    """Why ``checkpoint.monitor`` cannot pick ``task``'s epochs, or None.

    Example:
        >>> monitor_problem("val_accuracy", "multi_label")[:70]
        'val_accuracy is a single-label figure; a multi_label run keeps its epo'
        >>> monitor_problem("auto", "multi_label") is None
        True
    """
    allowed = TASK_MONITORS[task]
    if monitor == "auto" or monitor in allowed:
        return None
    kind = "multi-label" if task == "single_label" else "single-label"
    return (f"{monitor} is a {kind} figure; a {task} run keeps its epoch by {' or '.join(allowed)} "
            "(or auto).")


def lower_is_better(monitor: str) -> bool:
    """Whether smaller values of ``monitor`` are better (a loss) rather than larger (a score)."""
    return monitor in _LOWER_IS_BETTER


def better(value: float, than: float | None, monitor: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` improves on ``than`` by more than ``min_delta`` (``than`` None: always)."""
    if value is None or not math.isfinite(value):
        return False
    if than is None:
        return True
    if lower_is_better(monitor):
        return value < than - min_delta
    return value > than + min_delta


def best_row(rows: Sequence[dict], monitor: str) -> dict | None:
    """The earliest row with the best ``monitor`` value, or None when no row has it."""
    best = None
    for row in rows:
        if better(row.get(monitor), None if best is None else best[monitor], monitor):
            best = row
    return best


def epochs_without_improvement(rows: Sequence[dict], monitor: str, min_delta: float = 0.0) -> int:
    """Epochs after the last one that improved the best value by more than ``min_delta``.

    Example:
        >>> rows = [{"val_accuracy": v} for v in (0.5, 0.7, 0.71, 0.69)]
        >>> epochs_without_improvement(rows, "val_accuracy", 0.05)
        2
    """
    best, wait = None, 0
    for row in rows:
        value = row.get(monitor)
        if better(value, best, monitor, min_delta if best is not None else 0.0):
            best, wait = value, 0
        else:
            wait += 1
    return wait


def should_stop(rows: Sequence[dict], monitor: str, patience: int, min_delta: float = 0.0) -> bool:
    """Whether a phase whose epochs so far are ``rows`` stops (``patience`` epochs without improvement)."""
    return epochs_without_improvement(rows, monitor, min_delta) >= patience
