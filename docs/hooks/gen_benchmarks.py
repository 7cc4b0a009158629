"""The Benchmarks page, rendered from `benchmarks/results/*.json`.

`docs/benchmarks.md` holds the prose; a line ``<!-- results: NAME.json -->`` is replaced by that
file's command, date, machine and tables, read from the file itself, so every number on the
page is one a results file holds. A file may be placed once; files the page does not place are
rendered at its end, so a new results file is never left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

DIRECTIVE = re.compile(r"^<!-- results: (?P<name>[^ ]+\.json) -->$", re.MULTILINE)
# One value of a results file inside prose: {{ bench FILE.json dotted.path [format] }}; ``date`` is
# the file's date wherever its writer stored it.
VALUE = re.compile(r"\{\{ bench (?P<name>[^ ]+\.json) (?P<path>[^ ]+)(?: (?P<format>[^ ]+))? \}\}")


def render_values(markdown: str, results_dir: Path) -> str:
    """``markdown`` with every ``{{ bench ... }}`` replaced by the value it names (an unknown file or
    path stops the build)."""
    def replace(match: re.Match) -> str:
        path = results_dir / match.group("name")
        if not path.is_file():
            raise ValueError(f"{match.group(0)}: no such results file {path}")
        data = json.loads(path.read_text())
        if match.group("path") == "date":
            return provenance(data)["date"] or "date not recorded"
        value: Any = data
        for part in match.group("path").split("."):
            try:
                value = value[int(part)] if isinstance(value, list) else value[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ValueError(f"{match.group(0)}: {path.name} has no {match.group('path')}") from None
        return format(value, match.group("format") or "")

    return VALUE.sub(replace, markdown)


def render_page(markdown: str, results_dir: Path) -> str:
    """``markdown`` with every results directive replaced; the files it does not name appended."""
    available = {path.name: path for path in sorted(results_dir.glob("*.json"))}
    placed: list[str] = []

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in available:
            raise ValueError(f"docs/benchmarks.md places {name}, which is not in {results_dir}")
        if name in placed:
            raise ValueError(f"docs/benchmarks.md places {name} twice; each results file appears once")
        placed.append(name)
        return render_file(available[name])

    page = DIRECTIVE.sub(replace, markdown)
    rest = [name for name in available if name not in placed]
    if rest:
        page += "\n\n## Other results files\n\n" + "\n".join(render_file(available[name], heading="###")
                                                             for name in rest)
    return page


def render_file(path: Path, heading: str | None = None) -> str:
    """One results file: where it came from, then its numbers as tables."""
    data = json.loads(path.read_text())
    lines = []
    if heading:
        lines += [f"{heading} `{path.name}`", ""]
    lines += _provenance(path, data)
    for matches, renderer in RENDERERS:
        if matches(data):
            lines += ["", renderer(data)]
            break
    else:
        lines += ["", _generic(data)]
    notes = data.get("notes")
    if isinstance(notes, str) and notes.strip():
        lines += ["", f"*Notes recorded with the results:* {_inline(notes)}"]
    return "\n".join(lines) + "\n"


def provenance(data: dict) -> dict[str, str | None]:
    """``{"command", "date", "machine"}`` of a results file, wherever its writer stored them."""
    environment = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    machine = data.get("device") or data.get("machine")
    if isinstance(machine, dict):
        machine = ", ".join(str(machine[k]) for k in ("cpu", "cpu_count") if k in machine) + " CPU cores"
    if not machine and environment.get("cpu"):
        machine = f"{environment['cpu']}, {environment.get('cpu_count', '?')} cores"
    versions = ", ".join(f"{name} {environment[name]}" for name in ("keras", "tensorflow", "jax")
                         if environment.get(name))
    if versions and not data.get("device"):  # a device line already names its versions
        machine = f"{machine}; {versions}" if machine else versions
    command = data.get("command")
    if not command and isinstance(settings.get("command"), str) and " " in settings["command"]:
        command = settings["command"]
    return {"command": command, "date": str(data.get("date") or environment.get("date") or "") or None,
            "machine": str(machine) if machine else None}


def _provenance(path: Path, data: dict) -> list[str]:
    facts = provenance(data)
    lines = [f"`benchmarks/results/{path.name}`, measured {facts['date'] or '(date not recorded)'}"
             + (f" on {_inline(facts['machine'])}" if facts["machine"] else "") + ":", ""]
    lines += ["```bash", facts["command"] or "# command not recorded", "```"]
    if data.get("command_note"):
        lines += ["", _inline(data["command_note"])]
    return lines


# ------------------------------------------------------------------------------- formatting
def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        # Three significant digits: what a shared machine's timings can support.
        for bound, decimals in ((100, 0), (10, 1), (1, 2)):
            if abs(value) >= bound:
                return f"{value:,.{decimals}f}"
        return f"{value:.{digits}f}"
    return _inline(str(value))


def _stats(stats: dict | None, digits: int = 3) -> str:
    """``mean +- sd (min .. max)`` of a ``{"mean", "sd", "min", "max"}`` summary."""
    if not stats:
        return "-"
    if stats.get("n") == 1 or ("n" not in stats and stats.get("min") == stats.get("max") == stats["mean"]
                               and not stats.get("sd")):
        return f"{stats['mean']:.{digits}f} (one seed)"
    text = f"{stats['mean']:.{digits}f} ± {stats.get('sd', 0.0):.{digits}f}"
    if "min" in stats and "max" in stats:
        text += f" ({stats['min']:.{digits}f} .. {stats['max']:.{digits}f})"
    return text


def _inline(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- renderers
_TRAIN_COLUMNS = (
    ("model", "model"), ("implementation", "implementation"), ("style", "layout"), ("precision", "precision"),
    ("jit_compile", "XLA"), ("batch_size", "batch"), ("image_size", "px"), ("steps_per_execution", "steps/exec"),
    ("img_per_s", "img/s"), ("fit_img_per_s", "img/s, whole fit()"), ("step_ms_median", "step ms (median)"),
    ("compile_s", "compile s"), ("peak_memory_mb", "peak MiB"), ("mfu", "MFU"),
    ("ratio_to_reference", "vs reference"), ("paired_ratio", "paired ratio"),
)


def _is_throughput(data: dict) -> bool:
    results = data.get("results")
    return isinstance(results, list) and bool(results) and all(
        isinstance(r, dict) and "img_per_s" in r for r in results)


def _throughput(data: dict) -> str:
    rows = data["results"]
    columns = [(key, title) for key, title in _TRAIN_COLUMNS if any(r.get(key) is not None for r in rows)]
    if any("data" in r for r in rows):
        columns.insert(2, ("data", "data"))

    def cell(row: dict, key: str) -> str:
        value = row.get(key)
        if key == "mfu" and isinstance(value, float):
            return f"{value:.1%}"
        if key == "jit_compile" and isinstance(value, bool):
            return "on" if value else "off"
        return _num(value)

    return _table([title for _, title in columns], [[cell(r, key) for key, _ in columns] for r in rows])


def _is_transfer(data: dict) -> bool:
    return isinstance(data.get("settings"), dict) and isinstance(data["settings"].get("summary"), dict) \
        and "runs" in data["settings"]["summary"]


def _transfer(data: dict) -> str:
    from restransfer.bench.transfer import markdown_summary

    settings = data["settings"]
    changed = {**{f"--source-set {k}": v for k, v in settings.get("source_overrides", {}).items()},
               **{f"--set {k}": v for k, v in settings.get("target_overrides", {}).items()}}
    intro = (f"Seeds {', '.join(map(str, settings['seeds']))}; mean ± sd over seeds (min .. max); "
             "validation accuracy after precise BN, and before it.")
    if changed:
        intro += " Overrides: " + ", ".join(f"`{k}={v}`" for k, v in changed.items()) + "."
    return intro + "\n\n" + markdown_summary(settings["summary"]).replace(" +- ", " ± ")


def _is_quickstart_seeds(data: dict) -> bool:
    return isinstance(data.get("summary"), dict) and any(k.startswith("restransfer.") for k in data["summary"])


def _quickstart_seeds(data: dict) -> str:
    summary = data["summary"]
    runs = [("source", "source"), ("transfer", "transfer (conv1-2 frozen)"), ("head_only", "head only"),
            ("scratch", "scratch")]
    rows = []
    for run, title in runs:
        row = [title]
        for impl in ("restransfer", "keras"):
            row.append(_stats(summary.get(f"{impl}.{run}.val_accuracy")))
            seconds = summary.get(f"{impl}.{run}.seconds")
            row.append(f"{seconds['mean']:.1f}" if seconds else "-")
        row.append(_stats(summary.get(f"restransfer.{run}.val_accuracy_bn_recomputed")))
        rows.append(row)
    table = _table(["run", "restransfer val accuracy", "s", "plain Keras val accuracy", "s",
                    "restransfer, BatchNorm statistics recomputed"], rows)
    probe = summary.get("probe")
    seeds = len(data.get("seeds", {}))
    text = f"{seeds} seeds; mean ± sd (min .. max).\n\n{table}"
    if probe:
        text += f"\n\nLogistic-regression probe on the source's features of the same images: {_stats(probe)}."
    if data.get("code"):
        text += f"\n\nCode: {_inline(data['code'])}."
    return text


def _is_head_convergence(data: dict) -> bool:
    return isinstance(data.get("variants"), dict) and isinstance(data.get("summary"), dict)


def _head_convergence(data: dict) -> str:
    rows = []
    for name, stats in data["summary"].items():
        settings = data["variants"].get(name)
        what = "logistic regression on the same features" if name == "probe" else (
            ", ".join(f"{k} {v}" for k, v in settings.items()) if settings else "as shipped then")
        rows.append([f"`{name}`", _inline(what), _stats(stats)])
    return ("Head-only phase on the source's frozen features, 5 seeds; validation accuracy, mean ± sd "
            "(min .. max).\n\n" + _table(["variant", "what changes", "val accuracy"], rows))


def _is_pipeline_throughput(data: dict) -> bool:
    return data.get("benchmark") == "pipeline_throughput"


def _pipeline_throughput(data: dict) -> str:
    titles = {"restransfer": "restransfer, `resize: area` (default)", "keras_area": "Keras, `interpolation=\"area\"`",
              "restransfer_bilinear": "restransfer, `resize: bilinear`",
              "keras_default_bilinear": "Keras default (bilinear, no antialiasing)",
              "keras_reshuffled_each_epoch": "Keras, cache + whole-set reshuffle every epoch",
              "restransfer_first_run": "restransfer, first run on a dataset (the check decodes every file)"}
    rows = []
    for name, result in data["results"].items():
        rows.append([titles.get(name, f"`{name}`"), _num(result.get("cold_images_per_s")),
                     _num(result.get("first_batch_s")), _num(result.get("after_first_batch_images_per_s")),
                     _num(result.get("cold_cpu_s_median")), _num(result.get("cached_images_per_s"))])
    text = (f"{data['images']:,} JPEGs of {data['source_sizes_px'][0]}-{data['source_sizes_px'][1]} px resized to "
            f"{data['image_size'][0]} px, batch {data['batch_size']}, best of {data['rounds']} interleaved rounds."
            "\n\n" + _table(["pipeline", "cold img/s", "first batch s", "img/s after it", "cold CPU s",
                             "cached img/s"], rows))
    fidelity = data.get("resize_fidelity", {}).get("psnr_db_mean_by_shrink_factor")
    if fidelity:
        factors = list(next(iter(fidelity.values())))
        text += (f"\n\nResize fidelity, PSNR in dB against {_inline(data['resize_fidelity']['reference'])} "
                 f"({_inline(data['resize_fidelity']['images'])}; higher is closer):\n\n"
                 + _table(["shrink factor", *[f"{float(f):g}x" for f in factors]],
                          [[f"`resize: {method}`", *[_num(values[f]) for f in factors]]
                           for method, values in fidelity.items()]))
    stages = data.get("stages_cpu_s")
    if stages:
        text += "\n\nCPU seconds per stage for all images:\n\n" + _table(
            ["stage", "CPU s"], [[_inline(name), _num(value)] for name, value in stages.items()])
    return text


def _is_keras_cv(data: dict) -> bool:
    return data.get("benchmark") == "keras_cv_augment"


def _keras_cv(data: dict) -> str:
    by_backend = {r["backend"]: r for r in data["results"]}
    backends = list(by_backend)
    layers = list(next(iter(by_backend.values()))["layers"])
    rows = []
    for layer in layers:
        first = by_backend[backends[0]]["layers"][layer]
        row = [f"`{layer}`", _inline(first.get("does", "")), f"`{first['keras_core_equivalent']}`"
               if first.get("keras_core_equivalent") else "none"]
        for impl in ("keras_cv", "keras_core"):
            cells = []
            for backend in backends:
                entry = by_backend[backend]["layers"][layer].get(impl)
                cells.append("-" if not entry else (_num(entry["tf_data_ms"], 1) if entry.get("tf_data_ok")
                                                    else "fails"))
            row.append(" / ".join(cells))
        rows.append(row)
    settings = data.get("settings", {})
    return (f"Median ms per batch of {settings.get('batch')} at {settings.get('image_size')} px inside `tf.data` "
            f"({' / '.join(backends)} backend).\n\n"
            + _table(["layer", "what it does", "Keras core counterpart", "keras-cv ms", "Keras core ms"], rows))


def _is_grouped_conv(data: dict) -> bool:
    results = data.get("results")
    return isinstance(results, list) and bool(results) and "grouped_ms" in results[0]


def _grouped_conv(data: dict) -> str:
    rows = [[f"{r['spatial']}x{r['spatial']}x{r['width']}", _num(r["grouped_ms"]), _num(r["split_ms"]),
             _num(r["dense_ms"])] for r in data["results"]]
    return ("Forward + backward, ms per step:\n\n"
            + _table(["stage shape", "grouped (`feature_group_count`)", f"{data['results'][0]['groups']} convs + "
                      "concat", "dense (groups x the FLOPs)"], rows))


def _is_imbalance(data: dict) -> bool:
    summary = (data.get("settings") or {}).get("summary") or {}
    return isinstance(summary.get("rows"), list) and "weightings" in (data.get("settings") or {})


def _imbalance(data: dict) -> str:
    summary = data["settings"]["summary"]
    paired = summary.get("minus_none") or {}

    def versus(row: dict) -> str:
        # Older files hold no per-setting pairs: only auto's, without the seed counts.
        stats = (paired.get(row["class_weight"]) or {}).get(f"tta_{'on' if row['tta'] else 'off'}", {}).get(
            "test_smallest_class_recall")
        if not stats:
            return "-"
        return f"{stats['mean']:+.3f} ± {stats['sd']:.3f} ({stats['seeds_higher']} / {stats['seeds_lower']})"

    rows = [[f"`{r['class_weight']}`", "on" if r["tta"] else "off", _stats(r["test_balanced_accuracy"]),
             _stats(r["test_macro_f1"]), _stats(r["test_smallest_class_recall"]), versus(r), str(len(r["seeds"]))]
            for r in summary["rows"]]
    return _table(["data.class_weight", "TTA (flip)", "test balanced accuracy", "test macro F1",
                   "smallest class recall", "recall minus `none`, paired (seeds higher / lower)", "seeds"], rows)


def _is_calibration(data: dict) -> bool:
    summary = (data.get("settings") or {}).get("summary") or {}
    return "heldout_ece_before" in summary


def _calibration(data: dict) -> str:
    summary = data["settings"]["summary"]
    rows = [[what, _stats(summary[f"heldout_{key}_before"]), _stats(summary[f"heldout_{key}_after"])]
            for what, key in (("ECE (15 equal-width bins)", "ece"), ("ECE (15 equal-mass bins)", "adaptive_ece"),
                              ("NLL", "nll"), ("Brier score", "brier"))
            if f"heldout_{key}_before" in summary]
    lower = ", ".join(f"{what} on {summary[f'seeds_heldout_{key}_lower']}"
                      for what, key in (("ECE", "ece"), ("equal-mass ECE", "adaptive_ece"), ("NLL", "nll"),
                                        ("Brier", "brier")) if f"seeds_heldout_{key}_lower" in summary)
    return (_table(["held-out digits", "before", "after temperature scaling"], rows)
            + f"\n\nTemperature {_stats(summary['temperature'])}; lower after scaling: {lower} of "
              f"{summary['seeds']} seeds.")


RENDERERS: list[tuple[Callable[[dict], bool], Callable[[dict], str]]] = [
    (_is_imbalance, _imbalance),
    (_is_calibration, _calibration),
    (_is_transfer, _transfer),
    (_is_quickstart_seeds, _quickstart_seeds),
    (_is_head_convergence, _head_convergence),
    (_is_pipeline_throughput, _pipeline_throughput),
    (_is_keras_cv, _keras_cv),
    (_is_grouped_conv, _grouped_conv),
    (_is_throughput, _throughput),
]


def _generic(data: dict) -> str:
    """Any other file: its ``summary`` (mean +- sd entries) and its ``results`` rows' scalars."""
    parts = []
    summary = data.get("summary") or (data.get("settings") or {}).get("summary")
    if isinstance(summary, dict):
        rows = [[f"`{key}`", _stats(value) if isinstance(value, dict) and "mean" in value else _num(value)]
                for key, value in _flatten(summary).items()]
        if rows:
            parts.append(_table(["summary", "value"], rows))
    results = data.get("results")
    if isinstance(results, list) and results and all(isinstance(r, dict) for r in results):
        keys = list(dict.fromkeys(k for r in results for k, v in r.items() if _scalar(v)))
        parts.append(_table(keys, [[_num(r.get(k)) for k in keys] for r in results]))
    elif isinstance(results, dict):
        rows = [[f"`{key}`", _stats(value) if isinstance(value, dict) and "mean" in value else _num(value)]
                for key, value in _flatten(results).items()]
        parts.append(_table(["result", "value"], rows))
    return "\n\n".join(parts) or "(no table: see the file)"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not ("mean" in value and "sd" in value):
            flat.update(_flatten(value, path + "."))
        elif _scalar(value) or isinstance(value, dict):
            flat[path] = value
    return flat
