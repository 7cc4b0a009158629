"""The transfer benchmark: does pretraining help, and which stages should stay frozen?

On the quickstart task (42 letters drawn from matplotlib's fonts as the source, scikit-learn's
handwritten digits 5-9 as the target, ``recipes/quickstart_*.yaml``), for every seed: pretrain the source, then fine-tune the target
for every freeze choice from the source's weights (``transfer``) and from random weights
(``scratch``), each through ``restransfer.train`` exactly as a user runs the recipes. Each run
gives two accuracies: the last epoch's validation accuracy, measured before precise BatchNorm
(the statistics training left), and the final one after it (the statistics recomputed over the
training images; equal when no BatchNorm layer trains). A logistic regression fitted on the
source's pooled features of the same training images is the reference for head-only transfer,
and the head-only phase is run once more without the feature cache, right after the cached run,
to time the two side by side; the pair is repeated at larger images (``cache_image_sizes``), where
the frozen convolutions, not Keras' fixed cost per step and epoch, make up an uncached epoch.

With ``keras_baseline``, each seed also runs the same task written as a plain Keras script
(`restransfer.bench.keras_baseline`): its own source, then transfer, head-only and scratch.

Seeds are independent runs, so results are quoted as mean +- sd over seeds, never the best.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from restransfer.errors import ConfigError

FREEZES: dict[str, str | list[str]] = {
    "none": "none",
    "conv1": ["conv1"],
    "conv1-2": ["conv1", "conv2"],
    "conv1-3": ["conv1", "conv2", "conv3"],
    "all_but_head": "all_but_head",
}
INITS = ("transfer", "scratch")
RECIPES = {"source": "quickstart_source.yaml", "transfer": "quickstart_target.yaml",
           "scratch": "quickstart_scratch.yaml"}
HEAD_ONLY = "all_but_head"


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    """What the benchmark runs.

    Attributes:
        seeds: one source pretraining and one target run per freeze choice and init each.
        freezes: names from :data:`FREEZES`.
        inits: ``transfer`` (the source run's weights) and/or ``scratch`` (random weights).
        source_overrides: ``--set``-style overrides of the source recipe.
        target_overrides: overrides of both target recipes (the same budget for both).
        cache_compare: also run the head-only transfer phase with ``feature_cache: false``.
        cache_image_sizes: with ``cache_compare``, time the cached and uncached head-only phase
            again at these image sizes (timing pairs only: they are not rows of the accuracy
            table; the source's convolutions apply at any size).
        probe: fit the logistic-regression probe on the source's features.
        keras_baseline: also run the plain-Keras script of the same task per seed
            (`restransfer.bench.keras_baseline`).
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    freezes: tuple[str, ...] = tuple(FREEZES)
    inits: tuple[str, ...] = INITS
    source_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    target_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cache_compare: bool = True
    cache_image_sizes: tuple[int, ...] = (32,)
    probe: bool = True
    keras_baseline: bool = False

    def __post_init__(self):
        for name in self.freezes:
            if name not in FREEZES:
                raise ConfigError(f"Unknown freeze choice '{name}'; choices: {list(FREEZES)}.")
        for init in self.inits:
            if init not in INITS:
                raise ConfigError(f"Unknown init '{init}'; choices: {list(INITS)}.")
        if not self.seeds:
            raise ConfigError("The transfer benchmark needs at least one seed.")


# The suite's smoke settings: every code path (source, probe, cached and uncached head-only), little training.
SMOKE = TransferSettings(
    seeds=(0,), freezes=(HEAD_ONLY,), inits=("transfer",),
    source_overrides={"data.classes": "ABCDEFGH", "data.per_class": 8, "data.val_per_class": 4,
                      "phases[0].epochs": 1},
    target_overrides={"data.val_per_class": 6, "phases[0].epochs": 2}, cache_image_sizes=(),
)


def run_transfer(settings: TransferSettings, workdir: str | Path, *,
                 progress: Callable[[str], None] = print,
                 on_record: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Run the benchmark; returns one record per run (and per probe), see the module docstring.

    Args:
        settings: what to run.
        workdir: run folders go to ``workdir/seed{N}/...`` (replaced when they exist).
        progress: called with one line per finished run.
        on_record: called with all records so far after each run (to write partial results).
    """
    from restransfer.recipe.shipped import shipped_recipe

    workdir = Path(workdir)
    records: list[dict] = []

    def add(record: dict) -> None:
        records.append(record)
        progress(_line(record))
        if on_record is not None:
            on_record(records)

    with shipped_recipe(RECIPES["source"]) as source_recipe, \
            shipped_recipe(RECIPES["transfer"]) as transfer_recipe, \
            shipped_recipe(RECIPES["scratch"]) as scratch_recipe:
        recipes = {"transfer": transfer_recipe, "scratch": scratch_recipe}
        for seed in settings.seeds:
            folder = workdir / f"seed{seed}"
            source, seconds = _train(source_recipe, {**settings.source_overrides, "seed": seed}, folder / "source")
            add({"kind": "source", "seed": seed, "val_accuracy": source.metrics["final"]["val_accuracy"],
                 "wall_seconds": seconds})
            if settings.probe:
                add(probe_record(source, transfer_recipe, {**settings.target_overrides, "seed": seed,
                                                           "model.weights": str(source.run_dir)}, seed))
            for init in settings.inits:
                for name in settings.freezes:
                    overrides = {**settings.target_overrides, "seed": seed, "phases[0].freeze": FREEZES[name]}
                    if init == "transfer":
                        overrides["model.weights"] = str(source.run_dir)
                    run_dir = folder / f"{init}-{name}"
                    add(finetune_record(*_train(recipes[init], overrides, run_dir), seed=seed, init=init,
                                        freeze=name))
                    if settings.cache_compare and init == "transfer" and name == HEAD_ONLY:
                        for size in (None, *settings.cache_image_sizes):
                            sized = overrides if size is None else {**overrides, "data.image_size": size}
                            suffix = "" if size is None else f"-{size}px"
                            if size is not None:
                                add(finetune_record(*_train(recipes[init], sized, run_dir.with_name(
                                    run_dir.name + suffix)), seed=seed, init=init, freeze=name, timing=True))
                            # Right after the cached run, so both see the same load on the machine.
                            add(finetune_record(*_train(recipes[init], {**sized, "feature_cache": False},
                                                        folder / f"{init}-{name}{suffix}-uncached"),
                                                seed=seed, init=init, freeze=name, timing=True))
            if settings.keras_baseline:
                from restransfer.bench.keras_baseline import keras_baseline_records

                for record in keras_baseline_records(
                        {"source": source_recipe, **recipes}, seed,
                        source_overrides=settings.source_overrides, target_overrides=settings.target_overrides):
                    add(record)
    return records


def recipe_texts() -> dict[str, str]:
    """The shipped quickstart recipes as the benchmark runs them (``source``, ``transfer``,
    ``scratch``: their YAML text), stored with the results so that a file says what it measured."""
    from restransfer.recipe.shipped import shipped_recipe

    texts = {}
    for role, name in RECIPES.items():
        with shipped_recipe(name) as path:
            texts[role] = path.read_text()
    return texts


def _train(recipe: Path, overrides: dict, out: Path):
    from restransfer.recipe.engine import train

    start = time.perf_counter()
    run = train(recipe, overrides, out=out, force=True, verbose=0)
    return run, time.perf_counter() - start


def finetune_record(run, wall_seconds: float, *, seed: int, init: str, freeze: str, timing: bool = False) -> dict:
    """One target run: accuracies before and after precise BN, seconds, and the feature cache.

    ``timing``: a run that only times the feature cache (an uncached twin, another image size).
    """
    phase = run.metrics["phases"][0]
    final = run.metrics["final"]
    epochs = [row["seconds"] for row in run.history]
    cache = phase.get("feature_cache") or {}
    return {
        "kind": "finetune", "seed": seed, "init": init, "freeze": freeze, "timing": timing,
        "image_size": list(run.plan.data.image_size),
        "feature_cache": bool(cache), "feature_pass_seconds": cache.get("seconds"),
        "precise_bn": bool(phase.get("precise_bn")),
        "val_accuracy": final["val_accuracy"],
        "val_accuracy_before_precise_bn": run.history[-1].get("val_accuracy"),
        "epochs": final["epochs"], "train_seconds": final["seconds"], "epoch_seconds": epochs,
        # The first epoch traces the step functions; later epochs are the steady cost.
        "steady_epoch_seconds": statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0],
        "wall_seconds": round(wall_seconds, 2),
    }


def probe_record(source, target_recipe: Path, overrides: dict, seed: int) -> dict:
    """Logistic regression on the source's pooled last-stage features of the target's training images."""
    from restransfer.data import load_data
    from restransfer.diagnostics.arrays import dataset_arrays
    from restransfer.diagnostics.probe import holdout_probe_accuracy, stage_features
    from restransfer.models.stages import HEAD, stage_names
    from restransfer.recipe.load import load_recipe

    recipe = load_recipe(target_recipe, overrides)
    data = {**recipe.data.model_dump(), "augment": {}}
    start = time.perf_counter()
    bundle = load_data(**data, seed=recipe.seed)
    last = [s for s in stage_names(source.model) if s != HEAD][-1]
    (x_train, y_train), (x_val, y_val) = dataset_arrays(bundle.train_unaugmented), dataset_arrays(bundle.val)
    train = stage_features(source.model, x_train, [last])[last]
    val = stage_features(source.model, x_val, [last])[last]
    return {"kind": "probe", "seed": seed, "stage": last, "num_train": len(x_train), "num_val": len(x_val),
            "val_accuracy": holdout_probe_accuracy(train, y_train, val, y_val),
            "wall_seconds": round(time.perf_counter() - start, 2)}


def _line(record: dict) -> str:
    if record["kind"] == "source":
        return f"seed {record['seed']}: source val accuracy {record['val_accuracy']:.3f} ({record['wall_seconds']:.0f} s)"
    if record["kind"] == "probe":
        return f"seed {record['seed']}: probe on {record['stage']} features {record['val_accuracy']:.3f}"
    if record["kind"] == "keras":
        return (f"seed {record['seed']}: plain Keras {record['run']:9s} val accuracy {record['val_accuracy']:.3f} "
                f"({record['wall_seconds']:.1f} s)")
    cache = ", feature cache" if record["feature_cache"] else ""
    if record.get("timing"):
        cache += f", timing at {'x'.join(map(str, record['image_size']))} px"
    return (f"seed {record['seed']}: {record['init']:8s} freeze {record['freeze']:12s} val accuracy "
            f"{record['val_accuracy']:.3f} (before precise BN {record['val_accuracy_before_precise_bn']:.3f}), "
            f"epoch {record['steady_epoch_seconds']:.2f} s{cache}")


def mean_sd(values: Sequence[float]) -> dict:
    """``{"mean", "sd", "min", "max", "n"}`` of ``values`` (sd: sample standard deviation)."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summarize(records: Sequence[dict]) -> dict:
    """Mean +- sd over seeds per (init, freeze), the probe, and the cached vs uncached head-only
    epoch per image size (``feature_cache``: one entry per size, the recipe's first)."""
    rows = []
    runs = [r for r in records if r["kind"] == "finetune"]
    for init in INITS:
        for name in FREEZES:
            group = [r for r in runs if r["init"] == init and r["freeze"] == name and not r.get("timing")]
            if group:
                rows.append({"init": init, "freeze": name,
                             "val_accuracy": mean_sd([r["val_accuracy"] for r in group]),
                             "before_precise_bn": mean_sd([r["val_accuracy_before_precise_bn"] for r in group]),
                             "train_seconds": mean_sd([r["train_seconds"] for r in group])})
    summary: dict = {"runs": rows}
    probes = [r["val_accuracy"] for r in records if r["kind"] == "probe"]
    if probes:
        summary["probe"] = mean_sd(probes)
    baseline = _keras_baseline_summary(records)
    if baseline:
        summary["keras_baseline"] = baseline
    quickstart = _quickstart_seconds(records)
    if quickstart:
        summary["quickstart_runs_seconds"] = mean_sd(quickstart)
    by_size: dict[tuple, list] = {}
    for cached, uncached in _cache_pairs(runs):
        by_size.setdefault(tuple(cached.get("image_size") or ()), []).append((cached, uncached))
    if by_size:
        summary["feature_cache"] = [{"image_size": list(size), **_cache_summary(pairs)}
                                    for size, pairs in by_size.items()]
    return summary


def _keras_baseline_summary(records: Sequence[dict]) -> list[dict]:
    """Per plain-Keras run, mean +- sd over seeds beside restransfer's run it mirrors (same seeds)."""
    from restransfer.bench.keras_baseline import MIRRORS, RUNS

    rows = []
    for run in RUNS:
        group = [r for r in records if r["kind"] == "keras" and r["run"] == run]
        if not group:
            continue
        seeds = {r["seed"] for r in group}
        if run == "source":
            ours = [r for r in records if r["kind"] == "source" and r["seed"] in seeds]
        else:
            init, freeze = MIRRORS[run]
            ours = [r for r in records if r["kind"] == "finetune" and not r.get("timing") and r["seed"] in seeds
                    and (r["init"], r["freeze"]) == (init, freeze)]
        rows.append({"run": run, "keras": mean_sd([r["val_accuracy"] for r in group]),
                     "keras_seconds": mean_sd([r["wall_seconds"] for r in group]),
                     "restransfer": mean_sd([r["val_accuracy"] for r in ours]) if ours else None,
                     "restransfer_seconds": mean_sd([r["wall_seconds"] for r in ours]) if ours else None})
    return rows


def _quickstart_seconds(records: Sequence[dict]) -> list[float]:
    """Per seed, the wall seconds of the three runs `restransfer quickstart` makes: the source,
    the target recipe as shipped (conv1-2 frozen) and the scratch recipe (nothing frozen)."""
    totals = []
    for seed in sorted({r["seed"] for r in records}):
        runs = [r for r in records if r["seed"] == seed and not r.get("timing") and (
            r["kind"] == "source" or (r["kind"] == "finetune" and (r["init"], r["freeze"]) in
                                      (("transfer", "conv1-2"), ("scratch", "none"))))]
        if len(runs) == 3:
            totals.append(sum(r["wall_seconds"] for r in runs))
    return totals


def _cache_summary(pairs: Sequence[tuple[dict, dict]]) -> dict:
    ratios = [u["steady_epoch_seconds"] / c["steady_epoch_seconds"] for c, u in pairs]
    return {
        "steady_epoch_seconds_cached": mean_sd([c["steady_epoch_seconds"] for c, _ in pairs]),
        "steady_epoch_seconds_uncached": mean_sd([u["steady_epoch_seconds"] for _, u in pairs]),
        "speedup": mean_sd(ratios),
        "speedup_median": statistics.median(ratios),
        # The fastest epoch after the first: the least disturbed by other processes.
        "speedup_fastest_epochs": mean_sd([min(u["epoch_seconds"][1:] or u["epoch_seconds"])
                                           / min(c["epoch_seconds"][1:] or c["epoch_seconds"])
                                           for c, u in pairs]),
        "val_accuracy_cached": mean_sd([c["val_accuracy"] for c, _ in pairs]),
        "val_accuracy_uncached": mean_sd([u["val_accuracy"] for _, u in pairs]),
        "feature_pass_seconds": mean_sd([c["feature_pass_seconds"] or 0.0 for c, _ in pairs]),
    }


def _twin(record: dict, runs: Sequence[dict]):
    return [r for r in runs if r["seed"] == record["seed"] and r["init"] == record["init"]
            and r["freeze"] == record["freeze"] and r.get("image_size") == record.get("image_size")
            and r is not record]


def _cache_pairs(runs: Sequence[dict]) -> list[tuple[dict, dict]]:
    pairs = []
    for cached in (r for r in runs if r["feature_cache"]):
        uncached = [r for r in _twin(cached, runs) if not r["feature_cache"]]
        if uncached:
            pairs.append((cached, uncached[0]))
    return pairs


def _cell(stats: dict, digits: int = 3) -> str:
    return (f"{stats['mean']:.{digits}f} +- {stats['sd']:.{digits}f} "
            f"({stats['min']:.{digits}f} .. {stats['max']:.{digits}f})")


def markdown_summary(summary: dict) -> str:
    """README-ready tables: accuracy per freeze choice and init, the probe, and the cache timing."""
    seeds = max((row["val_accuracy"]["n"] for row in summary["runs"]), default=0)
    lines = [f"| frozen | init | val accuracy, precise BN (mean +- sd over {seeds} seeds, min .. max) "
             "| before precise BN | training s |", "|---|---|---|---|---|"]
    for row in summary["runs"]:
        lines.append(f"| {row['freeze']} | {row['init']} | {_cell(row['val_accuracy'])} | "
                     f"{_cell(row['before_precise_bn'])} | {row['train_seconds']['mean']:.1f} |")
    if "probe" in summary:
        lines.append(f"| all_but_head | logistic-regression probe, same training images | "
                     f"{_cell(summary['probe'])} | | |")
    if "quickstart_runs_seconds" in summary:
        lines += ["", f"The quickstart's three runs (source, transfer conv1-2, scratch): "
                      f"{_cell(summary['quickstart_runs_seconds'], 1)} s per seed."]
    baseline = summary.get("keras_baseline") or []
    if baseline:
        lines += ["", "| run | restransfer val accuracy | s | plain Keras val accuracy | s |", "|---|---|---|---|---|"]
    for row in baseline:
        ours = (f"{_cell(row['restransfer'])} | {row['restransfer_seconds']['mean']:.1f}"
                if row.get("restransfer") else "- | -")
        lines.append(f"| {row['run']} | {ours} | {_cell(row['keras'])} | {row['keras_seconds']['mean']:.1f} |")
    caches = summary.get("feature_cache") or []
    if isinstance(caches, dict):  # results written before the timing pairs per image size
        caches = [caches]
    if caches:
        lines += ["", "| head-only phase | epoch s (median of epochs 2..) | val accuracy |", "|---|---|---|"]
    for cache in caches:
        size = "x".join(map(str, cache["image_size"])) + " px" if cache.get("image_size") else "recipe size"
        lines += [f"| {size}, feature cache (features computed once in {cache['feature_pass_seconds']['mean']:.2f} s) | "
                  f"{_cell(cache['steady_epoch_seconds_cached'], 3)} | {_cell(cache['val_accuracy_cached'])} |",
                  f"| {size}, no cache | {_cell(cache['steady_epoch_seconds_uncached'], 3)} | "
                  f"{_cell(cache['val_accuracy_uncached'])} |",
                  f"| {size}, speed-up, paired per seed (median {cache['speedup_median']:.1f}) | "
                  f"{_cell(cache['speedup'], 1)} | |",
                  f"| {size}, speed-up of the fastest epochs, paired per seed | "
                  f"{_cell(cache['speedup_fastest_epochs'], 1)} | |"]
    return "\n".join(lines)


def plot_summary(summary: dict, path: str | Path | None = None, *,
                 title: str | None = "Transfer vs scratch per frozen stages"):
    """Validation accuracy (mean, sd bars over seeds) per freeze choice, a line per init, the
    probe as a band; a matplotlib Figure made without pyplot (``path`` saves a PNG)."""
    from matplotlib.figure import Figure

    from restransfer.training.plots import finish_figure

    fig = Figure(figsize=(7, 3.8))
    ax = fig.subplots()
    names = [name for name in FREEZES if any(row["freeze"] == name for row in summary["runs"])]
    for init in INITS:
        rows = {row["freeze"]: row["val_accuracy"] for row in summary["runs"] if row["init"] == init}
        if rows:
            xs = [i for i, name in enumerate(names) if name in rows]
            ax.errorbar(xs, [rows[names[i]]["mean"] for i in xs], yerr=[rows[names[i]]["sd"] for i in xs],
                        marker="o", capsize=3, label=init)
    probe = summary.get("probe")
    if probe:
        ax.axhspan(probe["mean"] - probe["sd"], probe["mean"] + probe["sd"], color="0.85",
                   label="logistic-regression probe (mean +- sd)")
    ax.set_xticks(range(len(names)), [f"frozen: {name}" for name in names], fontsize=8)
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, path, title)
