"""One self-contained HTML page about a run: recipe, stages, metrics, figures, top losses, skips.

The page has no external reference at all: styles are inline and every figure is embedded as a
``data:image/png;base64`` URI, so it opens offline, from an e-mail attachment or an artefact
store. It takes plain values (the recipe text, stage rows, the metrics dict, PNG paths), so it
can describe any training, not only a run folder; ``restransfer report RUN`` gathers those from
the run folder.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restransfer.errors import ConfigError
from restransfer.files import FileReadError, read_regular_file

# A training-curves or confusion-matrix PNG; anything larger is no figure restransfer drew.
MAX_FIGURE_BYTES = 64 << 20

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.name, th.name { text-align: left; }
td.frozen { background: #e8eef8; color: #345; } td.trainable { color: #175e1f; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: 0.8em; overflow-x: auto; font-size: 0.88em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } .muted { color: #777; }
"""


@dataclass
class StageMarks:
    """One stage row of the report's table.

    Attributes:
        stage: ``conv1`` ... ``head``.
        params: its parameters; ``output_shape`` its output without the batch.
        frozen: one flag per phase, in phase order.
    """

    stage: str
    params: int
    output_shape: tuple
    frozen: tuple[bool, ...]


def stage_marks(stage_rows: Sequence[Any], frozen_by_phase: Sequence[Sequence[str]]) -> list[StageMarks]:
    """Stage rows (``restransfer.diagnostics.complexity.stage_table``) with a frozen flag per phase."""
    frozen = [set(stages) for stages in frozen_by_phase]
    return [StageMarks(stage=row.stage, params=int(row.params), output_shape=tuple(row.output_shape),
                       frozen=tuple(row.stage in phase for phase in frozen))
            for row in stage_rows]


def png_data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:`` URI."""
    try:
        data = read_regular_file(path, MAX_FIGURE_BYTES)
    except FileReadError as error:
        raise ConfigError(f"{path} cannot be read: {error.reason}; the report embeds PNG figures "
                          "only.") from None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ConfigError(f"{path} is not a PNG file; the report embeds PNG figures only.")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, name_columns: int = 1) -> str:
    """Cells are HTML already (escaped by the caller); the first ``name_columns`` align left."""
    head = "".join(f'<th class="name">{_e(h)}</th>' if i < name_columns else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if cell.startswith("<td"):
                cells.append(cell)
            else:
                cells.append(f'<td class="name">{cell}</td>' if i < name_columns else f"<td>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _stage_section(stages: Sequence[StageMarks], phase_names: Sequence[str]) -> str:
    rows = []
    for row in stages:
        marks = [f'<td class="{"frozen" if f else "trainable"}">{"frozen" if f else "trainable"}</td>'
                 for f in row.frozen]
        rows.append([_e(row.stage), _e("x".join(str(d) for d in row.output_shape)), _number(row.params), *marks])
    total = sum(row.params for row in stages)
    rows.append(["<b>total</b>", "", f"<b>{total:,}</b>", *([""] * len(phase_names))])
    return _table(["stage", "output", "parameters", *[f"phase {i + 1}: {n}" for i, n in enumerate(phase_names)]],
                  rows)


_PHASE_COLUMNS = (("epochs", "epochs"), ("val_accuracy", "val accuracy"),
                  ("val_balanced_accuracy", "val balanced accuracy"), ("val_macro_f1", "val macro F1"),
                  ("best_val_accuracy", "best val accuracy"), ("val_loss", "val loss"), ("seconds", "seconds"),
                  ("images_per_s", "images/s"))


_MULTI_LABEL_PHASE_COLUMNS = (("epochs", "epochs"), ("val_map", "val mAP"), ("val_macro_f1", "val macro F1"),
                              ("val_micro_f1", "val micro F1"), ("val_exact_match", "val exact match"),
                              ("best_val_map", "best val mAP"), ("val_loss", "val loss"), ("seconds", "seconds"),
                              ("images_per_s", "images/s"))


def _multi_label_metrics_section(metrics: Mapping[str, Any]) -> str:
    """A multi-label run's figures: mAP, F1 and exact match per phase and final, per-label scores and thresholds."""
    digits = {"seconds": 1, "images_per_s": 1}
    rows = [[_e(phase.get("name", f"phase {i + 1}")),
             *(_number(phase.get(key), digits.get(key, 4)) for key, _ in _MULTI_LABEL_PHASE_COLUMNS)]
            for i, phase in enumerate(metrics.get("phases", []))]
    final = metrics.get("final") or {}
    if final:
        values = {**final, "best_val_map": (metrics.get("best") or {}).get("val_map")}
        rows.append(["<b>final</b>", *(_number(values.get(key), digits.get(key, 4))
                                       for key, _ in _MULTI_LABEL_PHASE_COLUMNS)])
    out = _table(["phase", *[label for _, label in _MULTI_LABEL_PHASE_COLUMNS]], rows)
    out += ("<p>Per-epoch mAP is Keras' area under each label's precision-recall curve; the final figures are "
            "scikit-learn's. F1 and exact match use each label's threshold: "
            f"{_e(final.get('thresholds_from', 'see thresholds.json'))}.</p>")
    per_label = final.get("per_label") or metrics.get("per_label")
    if per_label:
        out += "<h3>Per label (validation)</h3>" + _table(
            ["label", "AP", "precision", "recall", "F1", "threshold", "images"],
            [[_e(name), _number(s.get("ap"), 3), _number(s.get("precision"), 3), _number(s.get("recall"), 3),
              _number(s.get("f1"), 3), _number(s.get("threshold"), 3), _number(s.get("support"))]
             for name, s in per_label.items()])
    return out


def _metrics_section(metrics: Mapping[str, Any]) -> str:
    if metrics.get("task") == "multi_label":
        return _multi_label_metrics_section(metrics)
    phases = list(metrics.get("phases", []))
    digits = {"seconds": 1, "images_per_s": 1}
    rows = [[_e(phase.get("name", f"phase {i + 1}")),
             *(_number(phase.get(key), digits.get(key, 4)) for key, _ in _PHASE_COLUMNS)]
            for i, phase in enumerate(phases)]
    final = metrics.get("final")
    if final:
        rows.append(["<b>final</b>", _number(final.get("epochs")), _number(final.get("val_accuracy")),
                     _number(final.get("val_balanced_accuracy")), _number(final.get("val_macro_f1")),
                     _number((metrics.get("best") or {}).get("val_accuracy")), _number(final.get("val_loss")),
                     _number(final.get("seconds"), 1), _number(final.get("images_per_s"), 1)])
    out = _table(["phase", *[label for _, label in _PHASE_COLUMNS]], rows)
    if final and "val_top5_accuracy" in final:
        out += f"<p>Top-5 validation accuracy: {_number(final['val_top5_accuracy'])}.</p>"
    calibration = metrics.get("calibration")
    if calibration:
        out += (f"<p>Calibration: temperature {_number(calibration.get('temperature'))} fitted on "
                f"{_number(calibration.get('images'))} {_e(calibration.get('fitted_on', 'validation'))} images; "
                f"expected calibration error ({_number(calibration.get('bins'))} bins) "
                f"{_number(calibration.get('ece_before'))} &rarr; {_number(calibration.get('ece_after'))}, "
                f"NLL {_number(calibration.get('nll_before'))} &rarr; {_number(calibration.get('nll_after'))} "
                "(on the images it was fitted on)"
                + (": all of them are classified correctly, so the NLL has no minimum and the temperature stays 1"
                   if calibration.get("no_minimum") else "") + ".</p>")
    elif final and final.get("val_ece") is not None:
        out += f"<p>Expected calibration error (15 bins, uncalibrated): {_number(final['val_ece'])}.</p>"
    per_class = (final or {}).get("per_class") or metrics.get("per_class")
    if per_class:
        out += "<h3>Per class (validation)</h3>" + _table(
            ["class", "precision", "recall", "F1", "support"],
            [[_e(name), _number(s.get("precision"), 3), _number(s.get("recall"), 3), _number(s.get("f1", s.get("f1-score")), 3),
              _number(s.get("support"))] for name, s in per_class.items()])
    return out


def _figure(path: Path, caption: str) -> str:
    return (f'<figure><img src="{png_data_uri(path)}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def render_report(*, title: str, recipe_text: str, stages: Sequence[StageMarks], phase_names: Sequence[str],
                  metrics: Mapping[str, Any], figures: Mapping[str, str | Path] | None = None,
                  top_losses: Sequence[Any] = (), most_confused: Sequence[tuple[str, str, int]] = (),
                  skipped: Sequence[Mapping[str, str]] = (), notes: Sequence[str] = (),
                  facts: Mapping[str, Any] | None = None) -> str:
    """The HTML text of a run report.

    Args:
        title: the page heading (the run's name).
        recipe_text: the resolved recipe YAML, shown as it is.
        stages: from :func:`stage_marks`; ``phase_names`` one per frozen flag.
        metrics: ``metrics.json``: ``phases`` (name, epochs, val_accuracy, ...), ``final``, ``best``, ``per_class``.
        figures: ``{caption: PNG path}`` in display order (curves, confusion matrix, top losses);
            a missing file is listed as missing, not an error.
        top_losses: rows with ``path, true, predicted, probability, loss`` attributes.
        most_confused: ``(true, predicted, count)``.
        skipped: data files left out (``path``, ``part``, ``problem``).
        notes: other things skipped or worth knowing (weights not loaded, a head replaced ...).
        facts: short ``{label: value}`` pairs for the header (model, backend, precision ...).
    """
    if len(phase_names) != (len(stages[0].frozen) if stages else len(phase_names)):
        raise ConfigError(f"{len(phase_names)} phase names for {len(stages[0].frozen)} frozen flags per stage.")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{_STYLE}</style>"
             f"</head><body><h1>{_e(title)}</h1>"]
    if facts:
        parts.append('<p class="muted">' + " &middot; ".join(f"{_e(k)}: <b>{_e(v)}</b>" for k, v in facts.items())
                     + "</p>")
    parts.append('<h2 id="metrics">Metrics per phase</h2>' + _metrics_section(metrics))
    parts.append('<h2 id="stages">Stages</h2><p class="muted">Frozen stages keep their weights and, for '
                 "BatchNorm, their statistics during that phase.</p>" + _stage_section(stages, phase_names))
    missing = []
    parts.append('<h2 id="figures">Figures</h2>')
    for caption, path in (figures or {}).items():
        if Path(path).is_file():
            parts.append(_figure(Path(path), caption))
        else:
            missing.append(caption)
    if missing:
        parts.append('<p class="muted">Not available: ' + ", ".join(_e(m) for m in missing) + ".</p>")
    if top_losses:
        parts.append('<h2 id="top-losses">Top losses</h2>' + _table(
            ["#", "path", "true", "predicted", "probability", "loss"],
            [[str(i), _e(r.path), _e(r.true), _e(r.predicted), _number(r.probability, 3), _number(r.loss, 3)]
             for i, r in enumerate(top_losses, start=1)], name_columns=4))
    if most_confused:
        parts.append('<h2 id="most-confused">Most confused</h2>' + _table(
            ["true", "predicted", "count"], [[_e(t), _e(p), _number(c)] for t, p, c in most_confused],
            name_columns=2))
    parts.append('<h2 id="skipped">What was skipped</h2>')
    if skipped:
        parts.append(_table(["path", "split", "problem"],
                            [[_e(s.get("path", "")), _e(s.get("part", "")), _e(s.get("problem", ""))] for s in skipped],
                            name_columns=3))
    if notes:
        parts.append("<ul>" + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul>")
    if not skipped and not notes:
        parts.append("<p>No data file was skipped.</p>")
    parts.append(f'<h2 id="recipe">Recipe</h2><pre>{_e(recipe_text)}</pre></body></html>\n')
    return "".join(parts)


def write_report(path: str | Path, **values: Any) -> Path:
    """Write :func:`render_report` ``(**values)`` to ``path`` atomically; returns the path."""
    from restransfer.files import write_text

    path = Path(path)
    write_text(path, render_report(**values))
    return path


def run_report(run_dir: str | Path, out: str | Path | None = None, *,
               phases: Sequence[tuple[str, Sequence[str]]], model_name: str, weights: str,
               precision: str) -> Path:
    """Write ``RUN/report.html`` (or ``out``) from what a finished run folder holds.

    Reads the recipe text, ``metrics.json``, ``model.keras`` (for the stage table), the PNGs in
    ``plots/``, ``plots/top_losses.csv`` when ``evaluate`` wrote it, ``data_skipped.json`` and the
    weights notes in ``train.log``. What the run's recipe decided comes in as plain values (the
    recipe floor's ``restransfer.recipe.report.report`` reads them from the run's Plan).

    Args:
        phases: ``(name, frozen stages)`` of each phase, for the stage table's marks.
        model_name: the model, when ``run.json`` does not name it.
        weights: where the starting weights came from (``"none"`` without).
        precision: the recipe's precision, when ``run.json`` does not record it.
    """
    import csv
    import io

    from restransfer.diagnostics.complexity import stage_table
    from restransfer.diagnostics.interpret import TopLoss
    from restransfer.models.loading import load_run_model
    from restransfer.runs import RunFolder

    folder = RunFolder(run_dir)
    metrics_file = folder.path / "metrics.json"
    if not metrics_file.is_file():
        raise ConfigError(f"{folder.path} has no metrics.json: a report needs a finished run "
                          "(rerun `restransfer train` with the same recipe to finish it).")
    model = load_run_model(folder)
    stages = stage_marks(stage_table(model), [list(frozen) for _, frozen in phases])
    top = []
    top_file = folder.plots / "top_losses.csv"
    if top_file.is_file():
        rows = csv.DictReader(io.StringIO(folder.read_text("plots/top_losses.csv"), newline=""))
        top = [TopLoss(index=int(r["rank"]) - 1, path=r["path"], true=r["true"], predicted=r["predicted"],
                       probability=float(r["probability"]), true_probability=float(r["true_probability"]),
                       loss=float(r["loss"])) for r in rows]
    confused = []
    confused_file = folder.plots / "most_confused.csv"
    if confused_file.is_file():
        rows = csv.DictReader(io.StringIO(folder.read_text("plots/most_confused.csv"), newline=""))
        confused = [(r["true"], r["predicted"], int(r["count"])) for r in rows]
    skipped_file = folder.path / "data_skipped.json"
    skipped = folder.read_json("data_skipped.json")["skipped"] if skipped_file.is_file() else []
    log = folder.path / "train.log"
    notes = [line.split(" ", 1)[1].strip() for line in (folder.read_text("train.log").splitlines()
                                                         if log.is_file() else [])
             if "skipping it" in line or "keeps its fresh initialisation" in line]
    info = folder.info() or {}
    metrics = folder.read_json("metrics.json")
    multi_label = isinstance(metrics, dict) and metrics.get("task") == "multi_label"
    facts = {"model": info.get("model", model_name), "weights": weights or "none",
             "backend": info.get("backend", "?"), "precision": info.get("precision", precision),
             ("labels" if multi_label else "classes"): len(folder.class_names())}
    return write_report(
        Path(out) if out is not None else folder.path / "report.html", title=f"restransfer run {folder.path.name}",
        recipe_text=folder.recipe_text() or "", stages=stages, phase_names=[name for name, _ in phases], metrics=metrics,
        figures={"training curves": folder.plots / "training_curves.png",
                 **({"average precision and F1 per label (validation)": folder.plots / "label_scores.png"}
                    if multi_label else {"confusion matrix (validation)": folder.plots / "confusion_matrix.png"}),
                 "top losses (validation)": folder.plots / "top_losses.png",
                 **({"reliability diagram (validation, before and after temperature scaling)":
                     folder.plots / "reliability.png"} if (folder.plots / "reliability.png").is_file() else {})},
        top_losses=top, most_confused=confused, skipped=skipped, notes=list(dict.fromkeys(notes)), facts=facts)
