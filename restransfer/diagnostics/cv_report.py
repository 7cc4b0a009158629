"""The cross-validation page: the folds' spread, every fold's final metrics, the out-of-fold confusion matrix.

Self-contained like the run report (`restransfer.diagnostics.report`): inline styles, figures
embedded as ``data:`` URIs. It takes the ``cv.json`` dict, so it can be rewritten from the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from restransfer.diagnostics.report import _STYLE, _e, _figure, _number, _table

# Metrics shown first in the spread table, when present; every other numeric one follows.
_FIRST = ("val_accuracy", "val_loss", "val_ece", "val_top5_accuracy", "calibration.temperature",
          "calibration.ece_before", "calibration.ece_after")


def plot_fold_spread(rows: Sequence[Mapping[str, Any]], path: Path, metric: str = "val_accuracy") -> Path:
    """One dot per fold of ``metric``, with the mean and +- one sd."""
    from matplotlib.figure import Figure

    from restransfer.training.plots import save_figure

    values = np.array([row[metric] for row in rows], float)
    fig = Figure(figsize=(max(4.0, 0.5 * len(values) + 2), 3.6))
    ax = fig.subplots()
    ax.plot(np.arange(1, len(values) + 1), values, "o", label=metric)
    mean, sd = values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0
    ax.axhline(mean, color="tab:red", label=f"mean {mean:.3f}")
    ax.axhspan(mean - sd, mean + sd, color="tab:red", alpha=0.12, label=f"+- sd {sd:.3f}")
    ax.set_xlabel("fold")
    ax.set_ylabel(metric)
    ax.set_xticks(np.arange(1, len(values) + 1))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, Path(path))
    return Path(path)


def render_cv_report(result: Mapping[str, Any], *, title: str, figures: Mapping[str, Path]) -> str:
    """The HTML of a cv page from ``cv.json``'s dict and ``{caption: PNG}``."""
    summary = result["summary"]
    keys = [k for k in _FIRST if k in summary] + [k for k in summary if k not in _FIRST]
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>",
             f'<p class="muted">{result["folds"]} stratified folds'
             + (f' x {result["repeats"]} repeats' if result["repeats"] > 1 else "")
             + f' over {result["num_images"]} labelled images (seed {result["seed"]}); sd is the sample '
             "standard deviation over folds.</p>",
             '<h2 id="spread">Metrics over folds</h2>',
             _table(["metric", "mean", "sd", "min", "max"],
                    [[_e(k), _number(summary[k]["mean"]), _number(summary[k]["sd"]), _number(summary[k]["min"]),
                      _number(summary[k]["max"])] for k in keys])]
    oof = result["oof"]
    parts.append(f'<h2 id="oof">Out-of-fold predictions</h2><p>{oof["num_images"]} predictions, each by the fold '
                 f"model that did not train on the image: accuracy {_number(oof['accuracy'])}, loss "
                 f"{_number(oof['loss'])}, expected calibration error {_number(oof.get('ece'))}, macro F1 "
                 f"{_number(oof.get('macro_f1'))}.</p>")
    parts.append('<h2 id="folds">Folds</h2>' + _table(
        ["fold", "repeat", "run", *keys],
        [[_e(row["fold"]), _e(row["repeat"]), _e(row["run"]), *[_number(row.get(k)) for k in keys]]
         for row in result["per_fold"]], name_columns=3))
    parts.append('<h2 id="figures">Figures</h2>')
    for caption, path in figures.items():
        if Path(path).is_file():
            parts.append(_figure(Path(path), caption))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_cv_report(out: Path, result: Mapping[str, Any], *, title: str) -> Path:
    """Plot the spread and the out-of-fold confusion matrix into ``out/plots`` and write ``out/report.html``."""
    from restransfer.files import write_text
    from restransfer.training import plots

    out = Path(out)
    figures = {}
    if result["per_fold"] and "val_accuracy" in result["per_fold"][0]:
        figures["validation accuracy per fold"] = plot_fold_spread(result["per_fold"], out / "plots" / "fold_spread.png")
    figures["out-of-fold confusion matrix"] = plots.plot_confusion_matrix(
        np.asarray(result["oof"]["confusion_matrix"]), result["class_names"], out / "plots" / "oof_confusion_matrix.png",
        title=f"out of fold: accuracy {result['oof']['accuracy']:.3f}")
    path = out / "report.html"
    write_text(path, render_cv_report(result, title=title, figures=figures))
    return path


__all__ = ["plot_fold_spread", "render_cv_report", "write_cv_report"]
