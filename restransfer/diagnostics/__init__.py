"""Diagnostics: complexity tables, gradient flow, training curves, feature probes, norm comparisons.

Every function works on plain Keras models and NumPy arrays, so notebooks and the
``restransfer diagnose`` command share them.
"""

from restransfer.diagnostics.arrays import dataset_arrays
from restransfer.diagnostics.complexity import grouped_spec, render_stage_table, stage_table, totals
from restransfer.diagnostics.curves import load_history, plot_curves, train_curves
from restransfer.diagnostics.gradients import gradient_flow, gradient_norms
from restransfer.diagnostics.normalization import NormResult, compare_norms
from restransfer.diagnostics.plots import (
    plot_gradient_flow,
    plot_norm_comparison,
    plot_probe,
    plot_stage_bars,
    plot_tradeoff,
    save_figure,
)
from restransfer.diagnostics.probe import (
    ProbeRow,
    holdout_probe_accuracy,
    linear_probe,
    probe_accuracy,
    stage_features,
)

__all__ = [
    "NormResult",
    "ProbeRow",
    "compare_norms",
    "dataset_arrays",
    "gradient_flow",
    "gradient_norms",
    "grouped_spec",
    "holdout_probe_accuracy",
    "linear_probe",
    "load_history",
    "plot_curves",
    "plot_gradient_flow",
    "plot_norm_comparison",
    "plot_probe",
    "plot_stage_bars",
    "plot_tradeoff",
    "probe_accuracy",
    "render_stage_table",
    "save_figure",
    "stage_features",
    "stage_table",
    "totals",
    "train_curves",
]
