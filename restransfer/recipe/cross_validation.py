"""k-fold cross-validation of a recipe: one ordinary run per fold, then the folds' spread and out-of-fold scores.

The recipe's training and validation images are pooled and split by scikit-learn's
``StratifiedKFold`` (``RepeatedStratifiedKFold`` with ``repeats > 1``); a test split stays out of
every fold (`restransfer.data.folds`). Fold ``i`` trains into ``OUT/fold-i``, an ordinary run
folder whose recipe holds ``data.fold``, so ``evaluate``, ``report`` and ``export`` work on it. Then

* ``OUT/cv.json``: every final metric of every fold, their mean +- sd (sample sd), and the scores
  of the out-of-fold predictions;
* ``OUT/oof.csv``: each pooled image's out-of-fold probabilities (once per repeat);
* ``OUT/report.html``: the fold spread and the out-of-fold confusion matrix.

A killed ``cv`` reruns only what is unfinished: finished folds are kept, an interrupted fold
resumes from its last epoch. Under ``calibration: temperature`` each fold fits its temperature on
its own held-out fold (the half of it that did not choose the fold's kept epoch, where one is
chosen: the plan's ``calibration_holdout``).

Example:
    >>> result = cross_validate("recipes/quickstart_target.yaml", folds=5, out="runs/cv")
    >>> result.summary["val_accuracy"]["mean"]
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from restransfer.errors import ConfigError
from restransfer.models.loading import load_run_model
from restransfer.recipe.plan import Plan, load_plan, resolve
from restransfer.runs import FINISHED, RunFolder

FoldCallbacks = Callable[[int, Plan], Sequence[Any]]


@dataclass
class CrossValidation:
    """What ``cross_validate`` wrote and found.

    Attributes:
        out: the cv folder.
        folds: one dict per fold (``fold``, ``repeat``, ``run``, the final metrics).
        summary: ``{metric: {mean, sd, min, max, n}}`` over folds.
        oof: scores of the out-of-fold predictions (``evaluation_report``).
        probabilities, labels: the out-of-fold predictions, in ``oof.csv``'s order.
        class_names: label of each column.
    """

    out: Path
    folds: list[dict]
    summary: dict
    oof: dict
    probabilities: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    @property
    def report(self) -> Path:
        return self.out / "report.html"


def fold_plan(plan: Plan, *, folds: int, index: int, repeats: int = 1) -> Plan:
    """``plan`` with ``data.fold`` set to fold ``index`` (1-based) of ``folds`` x ``repeats``, seeded by the recipe."""
    from restransfer.data.schema import DataConfig, FoldConfig

    fold = FoldConfig(folds=folds, index=index, repeats=repeats, seed=plan.recipe.seed)
    data = DataConfig(root=plan.data.model_copy(update={"fold": fold}))
    recipe = plan.recipe.model_copy(update={"data": data})
    return resolve(recipe, source=plan.source, name=f"{plan.name}-fold-{index}")


def fold_folder(out: Path, index: int) -> Path:
    return Path(out) / f"fold-{index}"


def cross_validate(recipe: Plan | str | Path | Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any] | None = None,
                   *, folds: int = 5, repeats: int = 1, out: str | Path | None = None, force: bool = False,
                   verbose: int | str = "auto", fold_callbacks: FoldCallbacks | None = None,
                   say: Callable[[str], None] | None = None) -> CrossValidation:
    """Train one run per fold into ``out/fold-i`` and write ``cv.json``, ``oof.csv`` and ``report.html``.

    Args:
        recipe: a resolved ``Plan``, a YAML path or a mapping (without ``data.fold``).
        overrides: ``["phases[0].epochs=3"]`` or a mapping (not with a ``Plan``).
        folds: k of the stratified k-fold split (at least 2).
        repeats: repeat the split with other shuffles (``RepeatedStratifiedKFold``).
        out: the cv folder; default ``runs/<recipe name>-cv``.
        force: train every fold again (each fold folder is replaced as ``train --force`` does).
        verbose: passed to each fold's ``train``.
        fold_callbacks: ``(fold index, fold plan) -> Keras callbacks`` for that fold's ``fit``.
        say: where progress lines go (default ``print`` unless ``verbose`` is 0).
    """
    from restransfer.data.folds import check_fold_counts, fold_splits, pooled_part
    from restransfer.data.pipeline import make_listing
    from restransfer.files import FolderLock
    from restransfer.recipe.engine import train

    plan = recipe if isinstance(recipe, Plan) else load_plan(recipe, overrides)
    if isinstance(recipe, Plan) and overrides:
        raise ConfigError("overrides apply to a recipe file or mapping, not to a resolved Plan.")
    if plan.task == "multi_label":
        # Stratified folds need one class per image; a label set needs iterative stratification.
        raise ConfigError(f"Recipe {plan.source} is task multi_label: cross-validation stratifies its folds by one "
                          "class per image, which label sets do not have, so it is not available for multi_label "
                          "yet. Train once with the recipe's validation split (`restransfer train`).")
    if plan.data.fold is not None:
        raise ConfigError(f"Recipe {plan.source} already sets data.fold (one fold of a split); cross-validation "
                          "makes the folds itself. Remove data.fold from the recipe.")
    if not 2 <= folds <= 100 or not 1 <= repeats <= 100:
        raise ConfigError(f"--folds must be 2..100 and --repeats 1..100; received folds={folds}, repeats={repeats}.")
    say = say or ((lambda line: None) if verbose == 0 else (lambda line: print(line, flush=True)))
    out = Path(out if out is not None else Path("runs") / f"{plan.name}-cv").expanduser().resolve()
    listing = make_listing(plan.data, plan.recipe.seed)
    pool = pooled_part(listing)
    check_fold_counts(pool.labels, listing.class_names, folds)
    splits = fold_splits(pool.labels, folds=folds, repeats=repeats, seed=plan.recipe.seed)
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out / ".cv.lock")
    if not lock.acquire():
        raise ConfigError(f"{out} is in use by {lock.describe_holder()} (another cv or sweep writing it); wait "
                          "for it to finish or choose another --out.")
    try:
        say(f"Cross-validation: {len(pool)} labelled images (the recipe's training and validation splits), "
            f"{folds} stratified folds" + (f" x {repeats} repeats" if repeats > 1 else "")
            + (f"; the test split ({len(listing.parts['test'])} images) stays out" if "test" in listing.parts else "")
            + f"; runs in {out}.")
        plans = {}
        for index in range(1, len(splits) + 1):
            plans[index] = fold_plan(plan, folds=folds, index=index, repeats=repeats)
            folder = RunFolder(fold_folder(out, index))
            if not force and _finished(folder, plans[index]):
                say(f"Fold {index}/{len(splits)}: finished earlier in {folder.path}; kept.")
                continue
            say(f"Fold {index}/{len(splits)}: training on {len(splits[index - 1][0])} images, validating on "
                f"{len(splits[index - 1][1])}.")
            callbacks = fold_callbacks(index, plans[index]) if fold_callbacks is not None else ()
            train(plans[index], out=folder.path, force=force, verbose=verbose, callbacks=callbacks)
        result = _gather(out, plans, splits, pool, listing.class_names, folds=folds, repeats=repeats)
        say(f"Cross-validation: val_accuracy {_pm(result.summary.get('val_accuracy'))} over {len(splits)} folds; "
            f"out-of-fold accuracy {result.oof['accuracy']:.4f}. {out / 'cv.json'}, {out / 'oof.csv'}, "
            f"{result.report}.")
        return result
    finally:
        lock.release()


def _finished(folder: RunFolder, plan: Plan) -> bool:
    """A finished run of this fold's recipe (a finished run of another recipe is refused, named)."""
    if not folder.is_run() or (folder.info() or {}).get("status") != FINISHED:
        return False
    if folder.recipe_text() != plan.text:
        raise ConfigError(f"{folder.path} holds a finished run of another recipe than this cv's fold; choose "
                          "another --out, or pass --force to train every fold again.")
    return True


def _gather(out: Path, plans: Mapping[int, Plan], splits, pool, class_names: list[str], *, folds: int,
            repeats: int) -> CrossValidation:
    from restransfer.data import load_data
    from restransfer.diagnostics.cv_report import write_cv_report
    from restransfer.diagnostics.evaluation import evaluation_report, predict_dataset
    from restransfer.files import read_json, write_json, write_text

    rows, probabilities, labels, oof_rows = [], [], [], []
    for index, plan in plans.items():
        folder = RunFolder(fold_folder(out, index))
        metrics = read_json(folder.path / "metrics.json")
        repeat, fold = divmod(index - 1, folds)
        rows.append({"fold": index, "repeat": repeat + 1, "run": folder.path.name,
                     **_numbers(metrics.get("final", {})), **_numbers(metrics.get("calibration") or {}, "calibration.")})
        _, val = splits[index - 1]
        bundle = load_data(**plan.data_options(augment={}), run_dir=None)
        p, y = predict_dataset(load_run_model(folder), bundle.val)
        if len(y) != len(val) or not np.array_equal(y, pool.labels[val]):
            raise ConfigError(f"Fold {index}'s validation images changed since it trained ({len(y)} read, "
                              f"{len(val)} listed); fix or restore the data (`restransfer data check`) and rerun.")
        probabilities.append(p)
        labels.append(y)
        for position, image in enumerate(val):
            oof_rows.append((int(image), repeat + 1, index, pool.paths[image] if pool.paths is not None else "",
                             int(y[position]), p[position]))
    probabilities, labels = np.concatenate(probabilities), np.concatenate(labels)
    oof = evaluation_report(probabilities, labels, class_names)
    summary = {key: _mean_sd([row[key] for row in rows if key in row])
               for key in dict.fromkeys(k for row in rows for k in row if k not in ("fold", "repeat", "run"))}
    result = {"folds": folds, "repeats": repeats, "seed": next(iter(plans.values())).recipe.seed,
              "num_images": len(pool), "class_names": class_names, "per_fold": rows, "summary": summary,
              "sd": "sample standard deviation over folds (ddof=1)", "oof": oof}
    write_json(out / "cv.json", result)
    write_text(out / "oof.csv", _oof_csv(oof_rows, class_names))
    cv = CrossValidation(out=out, folds=rows, summary=summary, oof=oof, probabilities=probabilities, labels=labels,
                         class_names=class_names)
    write_cv_report(out, result, title=f"restransfer cv {out.name}")
    return cv


def _numbers(values: Mapping[str, Any], prefix: str = "") -> dict:
    return {prefix + k: v for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _mean_sd(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def _pm(stats: dict | None) -> str:
    return "n/a" if not stats else f"{stats['mean']:.4f} +- {stats['sd']:.4f}"


def _oof_csv(rows, class_names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "repeat", "fold", "path", "label", "predicted", *[f"p_{name}" for name in class_names]])
    for index, repeat, fold, path, label, p in sorted(rows, key=lambda r: (r[1], r[0])):
        writer.writerow([index, repeat, fold, path, class_names[label], class_names[int(np.argmax(p))],
                         *[f"{v:.6g}" for v in p]])
    return buffer.getvalue()


__all__ = ["CrossValidation", "cross_validate", "fold_plan"]
