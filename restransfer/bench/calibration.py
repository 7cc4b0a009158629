"""The calibration benchmark: does temperature scaling lower the calibration error on images it never saw?

On the quickstart task, for every seed: pretrain the source (``quickstart_source.yaml``), fine-tune
the target (``quickstart_target.yaml``) with ``calibration: temperature`` exactly as a user runs it
(the temperature is fitted on the half of the target's validation images that did not choose the
kept epoch, the plan's ``calibration_holdout``, and folded into ``model.keras``), then
measure the expected calibration error (equal-width and equal-mass bins), NLL and Brier score on the digits of the target's classes that neither
its training nor its validation split holds: before (the model's logits times the temperature,
i.e. what training left) and after (``model.keras`` as saved). Seeds are independent runs, so
results are quoted as mean +- sd over seeds.

``task="imbalance"`` measures the same on the imbalance benchmark's folders instead
(`restransfer.bench.imbalance`: digits 5-9 with 36/18/9/5/3 training images, balanced validation
and test folders of 30 per class, one source run of seed 0): the target is trained as a user's
folder is, ``data.class_weight: auto`` included, and the held-out images are the test folder.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from restransfer.bench.transfer import mean_sd
from restransfer.errors import ConfigError

METRICS = ("temperature", "val_ece_before", "val_ece_after", "heldout_ece_before", "heldout_ece_after",
           "heldout_adaptive_ece_before", "heldout_adaptive_ece_after", "heldout_nll_before", "heldout_nll_after",
           "heldout_brier_before", "heldout_brier_after", "heldout_accuracy")


TASKS = ("quickstart", "imbalance")


@dataclasses.dataclass(frozen=True)
class CalibrationSettings:
    """What the benchmark runs: one source pretraining and one calibrated target run per seed.

    Attributes:
        seeds: the seeds (each sets both recipes' ``seed``).
        source_overrides, target_overrides: ``--set``-style overrides of the two recipes.
        task: ``quickstart`` (the held-out digits of the quickstart's classes) or ``imbalance``
            (the imbalance benchmark's folders; the held-out images are its test folder).
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    source_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    target_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    task: str = "quickstart"

    def __post_init__(self):
        if not self.seeds:
            raise ConfigError("The calibration benchmark needs at least one seed.")
        if self.task not in TASKS:
            raise ConfigError(f"The calibration benchmark's task is one of {', '.join(TASKS)}; received {self.task!r}.")


def run_calibration(settings: CalibrationSettings, workdir: str | Path, *,
                    on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Train and measure every seed; one record per seed (``on_record`` sees each as it is made)."""
    from restransfer.recipe.engine import train
    from restransfer.recipe.plan import load_plan
    from restransfer.recipe.shipped import shipped_recipe

    workdir = Path(workdir).expanduser().resolve()
    if settings.task == "imbalance":
        return _run_on_folders(settings, workdir, on_record)
    records = []
    for seed in settings.seeds:
        start = time.perf_counter()
        with shipped_recipe("quickstart_source.yaml") as source_file, \
                shipped_recipe("quickstart_target.yaml") as target_file:
            source_plan = load_plan(source_file, {**settings.source_overrides, "seed": seed})
            source = _finished_source(source_plan, workdir / f"seed{seed}" / "source") or train(
                source_plan, out=workdir / f"seed{seed}" / "source", force=True, verbose=0)
            target_plan = load_plan(target_file, {**settings.target_overrides, "seed": seed,
                                                  "model.weights": str(getattr(source, "run_dir", source)),
                                                  "calibration": "temperature"})
            target = train(target_plan, out=workdir / f"seed{seed}" / "target", force=True, verbose=0)
        record = {"seed": seed, **heldout_record(target), "seconds": round(time.perf_counter() - start, 1)}
        records.append(record)
        if on_record is not None:
            on_record(record)
    return records


def _run_on_folders(settings: CalibrationSettings, workdir: Path,
                    on_record: Callable[[dict], None] | None) -> list[dict]:
    import shutil

    from restransfer.bench import imbalance
    from restransfer.recipe.engine import train
    from restransfer.recipe.plan import load_plan
    from restransfer.recipe.shipped import shipped_recipe

    records = []
    with shipped_recipe("quickstart_source.yaml") as source_file, \
            shipped_recipe("quickstart_target.yaml") as target_file:
        source_plan = load_plan(source_file, {**settings.source_overrides, "seed": 0})
        source = _finished_source(source_plan, workdir / "source") or train(
            source_plan, out=workdir / "source", force=True, verbose=0)
        for seed in settings.seeds:
            start = time.perf_counter()
            folder = workdir / f"seed{seed}"
            shutil.rmtree(folder / "data", ignore_errors=True)
            data = imbalance.write_digit_folders(folder / "data", val_per_class=30, test_per_class=30, seed=seed)
            overrides = {**imbalance.target_overrides_for(data), **settings.target_overrides, "seed": seed,
                         "model.weights": str(getattr(source, "run_dir", source)), "calibration": "temperature"}
            target, _ = imbalance.train_recipe(target_file, overrides, folder / "target")
            test = imbalance.folder_test_split(target, data["test"], batch_size=256)
            record = {"seed": seed, **calibration_record(target, test),
                      "class_weights": target.metrics.get("class_weights"),
                      "logit_adjustment": target.metrics.get("logit_adjustment"),
                      "seconds": round(time.perf_counter() - start, 1)}
            records.append(record)
            if on_record is not None:
                on_record(record)
    return records


def _finished_source(plan, out: Path):
    """A finished source run of the same resolved recipe in ``out`` (kept: the source is the same for
    every target setting of a seed), else None."""
    from restransfer.runs import FINISHED, RunFolder

    folder = RunFolder(out)
    if folder.is_run() and (folder.info() or {}).get("status") == FINISHED and folder.recipe_text() == plan.text:
        return folder.path
    return None


def heldout_record(run) -> dict:
    """Calibration of a finished digits run on its classes' digits outside its training and validation splits."""
    from restransfer.data import load_data
    from restransfer.data.sources import digits_indices, digits_split, optical_counts_to_rgb

    data = run.plan.data
    if data.source != "digits":
        raise ConfigError(f"The calibration benchmark measures digits runs; this run's source is {data.source}.")
    from sklearn.datasets import load_digits

    indices, labels = digits_indices(digits_split(data.classes, data.per_class, data.val_per_class),
                                     run.plan.recipe.seed)["rest"]
    if not len(indices):
        raise ConfigError("The run's splits use every digit of its classes; lower val_per_class to keep some held out.")
    images = optical_counts_to_rgb(load_digits().images)[indices]
    heldout = load_data(source="arrays", x_train=images, y_train=labels, x_val=images, y_val=labels,
                        class_names=run.class_names, image_size=list(run.plan.image_size), batch_size=256).val
    return calibration_record(run, heldout)


def calibration_record(run, heldout) -> dict:
    """A calibrated run's scores on ``heldout`` (a dataset of images and labels it never saw), before and
    after its temperature, beside its validation ones."""
    from sklearn.metrics import brier_score_loss

    from restransfer.diagnostics.evaluation import predict_dataset
    from restransfer.training.calibration import (
        adaptive_calibration_error,
        expected_calibration_error,
        logits_model,
        negative_log_likelihood,
        softmax,
    )

    calibration = run.metrics["calibration"]
    temperature = calibration["temperature"]
    calibrated, seen = predict_dataset(logits_model(run.model), heldout)
    logits = calibrated.astype(np.float64) * temperature  # the logits before the temperature was folded in
    before, after = softmax(logits), softmax(calibrated)
    classes = list(range(logits.shape[-1]))
    return {
        "temperature": temperature, "heldout_images": int(len(seen)), "val_images": calibration["images"],
        "val_ece_before": calibration["ece_before"], "val_ece_after": calibration["ece_after"],
        "heldout_ece_before": expected_calibration_error(before, seen),
        "heldout_ece_after": expected_calibration_error(after, seen),
        "heldout_adaptive_ece_before": adaptive_calibration_error(before, seen),
        "heldout_adaptive_ece_after": adaptive_calibration_error(after, seen),
        "heldout_brier_before": float(brier_score_loss(seen, before, labels=classes)),
        "heldout_brier_after": float(brier_score_loss(seen, after, labels=classes)),
        "heldout_nll_before": negative_log_likelihood(logits, seen),
        "heldout_nll_after": negative_log_likelihood(calibrated, seen),
        "heldout_accuracy": float(np.mean(logits.argmax(-1) == seen)),
        "val_accuracy": run.metrics["final"]["val_accuracy"],
    }


def summarize(records: Sequence[dict]) -> dict:
    """Mean +- sd over seeds of every measured value, and on how many seeds the held-out ECE fell."""
    summary = {name: mean_sd([r[name] for r in records]) for name in METRICS}
    for name in ("ece", "adaptive_ece", "nll", "brier"):
        summary[f"seeds_heldout_{name}_lower"] = sum(r[f"heldout_{name}_after"] < r[f"heldout_{name}_before"]
                                                     for r in records)
        summary[f"heldout_{name}_after_minus_before"] = mean_sd(
            [r[f"heldout_{name}_after"] - r[f"heldout_{name}_before"] for r in records])
    summary["seeds"] = len(records)
    return summary


def markdown_summary(summary: dict) -> str:
    def cell(name: str) -> str:
        stats = summary[name]
        return f"{stats['mean']:.3f} +- {stats['sd']:.3f}"

    return "\n".join([
        "| held-out digits | before | after temperature scaling |",
        "| --- | ---: | ---: |",
        f"| ECE (15 equal-width bins) | {cell('heldout_ece_before')} | {cell('heldout_ece_after')} |",
        f"| ECE (15 equal-mass bins) | {cell('heldout_adaptive_ece_before')} | "
        f"{cell('heldout_adaptive_ece_after')} |",
        f"| NLL | {cell('heldout_nll_before')} | {cell('heldout_nll_after')} |",
        f"| Brier score | {cell('heldout_brier_before')} | {cell('heldout_brier_after')} |",
        "",
        f"temperature {cell('temperature')}; held-out accuracy {cell('heldout_accuracy')} (unchanged by the "
        f"temperature); ECE lower on {summary['seeds_heldout_ece_lower']} of {summary['seeds']} seeds.",
    ])
