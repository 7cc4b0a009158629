"""The multi-label benchmark: the shipped multi-label recipe against one-vs-rest logistic regressions.

Per seed, ``restransfer data grid`` data are written (32x32 images of a 2x2 grid whose cells are
blank or hold one of the digits 0-5; the labels are the digits shown, from none to four), drawn
from disjoint shares of scikit-learn's digits for the training, validation and test grids.
Three models learn the same training grids:

- ``restransfer``: ``recipes/multilabel_digits.yaml`` (cifar_resnet20 from scratch, sigmoid head,
  binary cross-entropy, the kept epoch by validation mAP), with the seed's data;
- ``logreg_pixels``: scikit-learn's ``OneVsRestClassifier(LogisticRegression)`` on the standardised
  pixels (one channel: the grids are grey);
- ``logreg_source_features``: the same on frozen source features: the pooled last stage of the
  quickstart's source run (``recipes/quickstart_source.yaml``, 42 letters, seed 0, trained once),
  fed the grids at its 16 px (each digit at its own 8x8 resolution).

Every model's per-label thresholds are chosen on the validation grids (each label's best F1,
`restransfer.diagnostics.multi_label.choose_thresholds`), and every score is scikit-learn's on
the test grids (`multi_label_report`): mean average precision, macro and micro F1, exact match.
Seeds are independent draws and runs, so results are mean +- sd over seeds.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from restransfer.errors import ConfigError

MODELS = ("restransfer", "logreg_pixels", "logreg_source_features")
METRICS = ("test_map", "test_macro_f1", "test_micro_f1", "test_exact_match")


@dataclasses.dataclass(frozen=True)
class MultiLabelSettings:
    """What the benchmark runs.

    Attributes:
        seeds: one grid draw and one run per model each.
        counts: training, validation and test grids.
        digits: the labels.
        source_seed: the seed of the one source run the features come from.
        logreg_c: the logistic regressions' inverse regularisation strength.
        logreg_max_iter: their iteration budget.
        recipe_overrides: ``--set``-style overrides of the multi-label recipe.
        source_overrides: overrides of the source recipe.
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    counts: tuple[int, int, int] = (600, 200, 200)
    digits: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    source_seed: int = 0
    logreg_c: float = 1.0
    logreg_max_iter: int = 1000
    recipe_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.seeds:
            raise ConfigError("The multi-label benchmark needs at least one seed.")


# The suite's smoke settings: every code path, little training.
SMOKE = MultiLabelSettings(
    seeds=(0,), counts=(24, 16, 16), digits=(0, 1, 2), logreg_max_iter=200,
    recipe_overrides={"phases[0].epochs": 1, "data.batch_size": 8},
    source_overrides={"data.per_class": 4, "data.val_per_class": 2, "data.classes": "ABCDEF",
                      "phases[0].epochs": 1})


def run_multilabel(settings: MultiLabelSettings, workdir: str | Path, *, progress: Callable[[str], None] = print,
                   on_record: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Run the benchmark; one record per seed and model (see the module docstring)."""
    from restransfer.data.grid import write_grid
    from restransfer.recipe.shipped import shipped_recipe

    workdir = Path(workdir)
    records: list[dict] = []
    with shipped_recipe("quickstart_source.yaml") as source_recipe, \
            shipped_recipe("multilabel_digits.yaml") as recipe:
        source, seconds = _train(source_recipe, {**settings.source_overrides, "seed": settings.source_seed},
                                 workdir / "source")
        progress(f"source (seed {settings.source_seed}): val_accuracy {source.metrics['final']['val_accuracy']:.3f} "
                 f"({seconds:.0f} s)")
        for seed in settings.seeds:
            folder = workdir / f"seed{seed}"
            shutil.rmtree(folder / "data", ignore_errors=True)
            tables = write_grid(folder / "data", counts=settings.counts, digits=settings.digits, seed=seed)
            overrides = {**settings.recipe_overrides, "seed": seed, "data.path": str(tables["train"]),
                         "data.val_path": str(tables["val"]), "data.test_path": str(tables["test"])}
            run, seconds = _train(recipe, overrides, folder / "restransfer")
            records.append(_ours(run, seed, seconds))
            progress(_line(records[-1]))
            grids, names = _read_grids(tables)
            if names != list(run.class_names):
                raise ConfigError(f"The grid's labels {names} differ from the run's {run.class_names}.")
            for model in MODELS[1:]:
                start = time.perf_counter()
                features = {split: _features(model, images, source) for split, (images, _) in grids.items()}
                report = _logistic_regression(features, {s: y for s, (_, y) in grids.items()}, names, settings)
                records.append(_record(model, seed, report, time.perf_counter() - start))
                progress(_line(records[-1]))
            if on_record is not None:
                on_record(records)
    return records


def _train(recipe: Path, overrides: dict, out: Path):
    from restransfer.recipe.engine import train
    from restransfer.recipe.load import load_recipe, read_yaml, set_key
    from restransfer.recipe.plan import resolve

    tree = read_yaml(recipe)
    for key, value in overrides.items():
        set_key(tree, key, value)
    start = time.perf_counter()
    run = train(resolve(load_recipe(tree), name=out.name), out=out, force=True, verbose=0)
    return run, time.perf_counter() - start


def _ours(run, seed: int, seconds: float) -> dict:
    """Our run's test scores at its own thresholds (chosen on the validation grids when it trained)."""
    from restransfer.recipe.evaluate import evaluate

    report = evaluate(run.run_dir, split="test")
    record = _record("restransfer", seed, report, seconds)
    final = run.metrics["final"]
    record.update(kept_epoch=final.get("epoch"), epochs=final.get("epochs"), val_map=final.get("val_map"))
    return record


def _read_grids(tables: Mapping[str, Path]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Each split's images ``[N, h, w, 3]`` (float32 0..255) and 0/1 labels ``[N, L]``, and the label names,
    read as the run's ``csv`` source reads the tables."""
    from PIL import Image

    from restransfer.data.sources import csv_listing

    listing = csv_listing(tables["train"], tables["val"], tables["test"], None, 0)
    grids = {split: (np.stack([np.asarray(Image.open(path).convert("RGB"), np.float32) for path in part.paths]),
                     np.asarray(part.labels)) for split, part in listing.parts.items()}
    return grids, list(listing.class_names)


def _features(model: str, images: np.ndarray, source) -> np.ndarray:
    """The inputs of a logistic regression: grey pixels, or the source run's pooled last stage at its size."""
    if model == "logreg_pixels":
        return images[..., 0].reshape(len(images), -1)
    import keras

    from restransfer.diagnostics.probe import stage_features
    from restransfer.models.stages import model_stages

    size = source.model.input_shape[1:3]
    resized = keras.ops.convert_to_numpy(keras.ops.image.resize(images, size, interpolation="area"))
    last = [stage for stage in model_stages(source.model) if stage.startswith("conv")][-1]
    return stage_features(source.model, resized, [last])[last]


def _logistic_regression(features: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                         names: Sequence[str], settings: MultiLabelSettings) -> dict:
    """One-vs-rest logistic regression on standardised features; thresholds on val, scores on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from restransfer.diagnostics.multi_label import choose_thresholds, multi_label_report

    model = make_pipeline(StandardScaler(), OneVsRestClassifier(
        LogisticRegression(C=settings.logreg_c, max_iter=settings.logreg_max_iter)))
    model.fit(features["train"], labels["train"])
    thresholds = choose_thresholds(model.predict_proba(features["val"]), labels["val"])
    return multi_label_report(model.predict_proba(features["test"]), labels["test"], names, thresholds=thresholds,
                              threshold_source="chosen on the validation grids")


def _record(model: str, seed: int, report: dict, seconds: float) -> dict:
    return {"model": model, "seed": seed, "test_map": report["map"], "test_macro_f1": report["macro_f1"],
            "test_micro_f1": report["micro_f1"], "test_exact_match": report["exact_match"],
            "test_ap": {name: s["ap"] for name, s in report["per_label"].items()},
            "thresholds": report["thresholds"], "wall_seconds": round(seconds, 1)}


def _line(record: dict) -> str:
    return (f"seed {record['seed']} {record['model']:>22}: test mAP {record['test_map']:.3f}, macro F1 "
            f"{record['test_macro_f1']:.3f}, micro F1 {record['test_micro_f1']:.3f}, exact match "
            f"{record['test_exact_match']:.3f} ({record['wall_seconds']:.0f} s)")


def summarize(records: Sequence[dict]) -> dict:
    """Mean +- sd over seeds per model, and the paired differences ours - each baseline."""
    from restransfer.bench.imbalance import mean_sd

    groups: dict[str, dict[int, dict]] = {}
    for record in records:
        groups.setdefault(record["model"], {})[record["seed"]] = record
    rows = [{"model": model, "seeds": sorted(by_seed),
             **{metric: mean_sd([r[metric] for r in by_seed.values()]) for metric in METRICS}}
            for model, by_seed in groups.items()]
    ours = groups.get("restransfer", {})
    paired = {}
    for model, by_seed in groups.items():
        seeds = sorted(set(ours) & set(by_seed))
        if model != "restransfer" and seeds:
            paired[f"restransfer_minus_{model}"] = {
                metric: mean_sd([ours[s][metric] - by_seed[s][metric] for s in seeds]) for metric in METRICS}
    return {"rows": rows, "paired": paired}


def markdown_summary(summary: dict) -> str:
    """The summary as a Markdown table (mean +- sd over seeds)."""
    lines = ["| model | test mAP | test macro F1 | test micro F1 | test exact match |", "|---|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append(f"| {row['model']} | " + " | ".join(
            f"{row[m]['mean']:.3f} +- {row[m]['sd']:.3f}" for m in METRICS) + " |")
    return "\n".join(lines)


__all__ = ["MODELS", "SMOKE", "MultiLabelSettings", "markdown_summary", "run_multilabel", "summarize"]
