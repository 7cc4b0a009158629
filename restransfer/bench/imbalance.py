"""The imbalance benchmark: do class weights help a folder whose classes hold 36 to 3 images?

Scikit-learn's handwritten digits 5-9 are written as PNG files in class folders, as a user's
photos would be: 36, 18, 9, 5 and 3 training images (digits 5 to 9), a balanced validation
folder of 30 per class and a balanced test folder of 30 per class, drawn per seed. The quickstart's
source run (``recipes/quickstart_source.yaml``, 42 letters, seed 0) is pretrained once; for every
seed the shipped target recipe's settings (``recipes/quickstart_target.yaml``) fine-tune it on the
folders once per ``data.class_weight`` setting, and the kept model is evaluated on the test folder
with and without test-time augmentation (a horizontal flip, as ``evaluate --tta``). The kept epoch is picked on the
validation folder (``checkpoint.keep: best``), so the test folder's scores are the ones to quote.
A scikit-learn logistic regression on the same folders' pixels (plain and with balanced class
weights) is the baseline a network must beat.

Seeds are independent runs, so results are mean +- sd over seeds.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from restransfer.errors import ConfigError

DIGITS = (5, 6, 7, 8, 9)
TRAIN_COUNTS = (36, 18, 9, 5, 3)
WEIGHTINGS = ("none", "auto")
# The logistic-regression baselines' class_weight, as the records name them.
LOGREG = {"logreg_none": None, "logreg_balanced": "balanced"}


@dataclasses.dataclass(frozen=True)
class ImbalanceSettings:
    """What the benchmark runs.

    Attributes:
        seeds: one folder draw and one target run per weighting each.
        source_seed: the seed of the one source run every target starts from (the quickstart's).
        weightings: ``data.class_weight`` values to compare.
        train_counts: training images of digits 5..9.
        val_per_class: images per class of the balanced validation folder (picks the kept epoch).
        test_per_class: images per class of the balanced test folder (the reported scores).
        tta_crops: crops of the TTA evaluation besides the flip.
        source_overrides: ``--set``-style overrides of the source recipe.
        target_overrides: overrides of every target run.
        logreg: also fit scikit-learn's logistic regression on the folders' pixels (`LOGREG`).
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    source_seed: int = 0
    weightings: tuple[str, ...] = WEIGHTINGS
    train_counts: tuple[int, ...] = TRAIN_COUNTS
    val_per_class: int = 30
    test_per_class: int = 30
    tta_crops: int = 0
    source_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    target_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    logreg: bool = True

    def __post_init__(self):
        if len(self.train_counts) != len(DIGITS):
            raise ConfigError(f"train_counts needs one count per digit {DIGITS}; received {self.train_counts}.")
        if not self.seeds:
            raise ConfigError("The imbalance benchmark needs at least one seed.")


# The suite's smoke settings: every code path, little training.
SMOKE = ImbalanceSettings(
    seeds=(0,), train_counts=(8, 4, 3, 2, 2), val_per_class=4, test_per_class=4,
    source_overrides={"data.per_class": 6, "data.val_per_class": 2, "data.classes": "ABCDEF", "phases[0].epochs": 1},
    target_overrides={"phases[0].epochs": 2})


def write_digit_folders(root: str | Path, train_counts: Sequence[int] = TRAIN_COUNTS, *, val_per_class: int = 30,
                        test_per_class: int = 0, seed: int = 0, digits: Sequence[int] = DIGITS) -> dict[str, Path]:
    """Write scikit-learn's 8x8 digits as PNG files: ``root/{train,val,test}/<digit>/<n>.png``.

    Each digit's images are drawn without replacement by a seeded permutation: the first
    ``train_counts[i]`` train, the next ``val_per_class`` validate, the next ``test_per_class`` test.

    Returns:
        ``{"train": folder, "val": folder[, "test": folder]}``.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    from restransfer.data.sources import optical_counts_to_rgb

    digits_data = load_digits()
    images = np.round(optical_counts_to_rgb(digits_data.images)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    root = Path(root)
    parts = {"train": root / "train", "val": root / "val"}
    if test_per_class:
        parts["test"] = root / "test"
    for digit, n_train in zip(digits, train_counts):
        members = rng.permutation(np.flatnonzero(digits_data.target == digit))
        sizes = {"train": n_train, "val": val_per_class, "test": test_per_class}
        start = 0
        for part in parts:
            chosen = members[start:start + sizes[part]]
            start += sizes[part]
            folder = parts[part] / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                Image.fromarray(images[index]).save(folder / f"{index}.png")
    return parts


def run_imbalance(settings: ImbalanceSettings, workdir: str | Path, *, progress: Callable[[str], None] = print,
                  on_record: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Run the benchmark; one record per target run and evaluation (see the module docstring)."""
    import shutil

    from restransfer.recipe.shipped import shipped_recipe

    workdir = Path(workdir)
    records: list[dict] = []
    with shipped_recipe("quickstart_source.yaml") as source_recipe, \
            shipped_recipe("quickstart_target.yaml") as target_recipe:
        source, seconds = train_recipe(source_recipe, {**settings.source_overrides, "seed": settings.source_seed},
                                 workdir / "source")
        progress(f"source (seed {settings.source_seed}): val_accuracy {source.metrics['final']['val_accuracy']:.3f} "
                 f"({seconds:.0f} s)")
        for seed in settings.seeds:
            folder = workdir / f"seed{seed}"
            shutil.rmtree(folder / "data", ignore_errors=True)
            data = write_digit_folders(folder / "data", settings.train_counts, val_per_class=settings.val_per_class,
                                       test_per_class=settings.test_per_class, seed=seed)
            if settings.logreg:
                for record in logreg_records(data, seed=seed):
                    records.append(record)
                    progress(_line(record))
            for weighting in settings.weightings:
                overrides = {
                    **target_overrides_for(data), **settings.target_overrides, "seed": seed,
                    "model.weights": str(source.run_dir), "data.class_weight": weighting}
                run, seconds = train_recipe(target_recipe, overrides, folder / f"target-{weighting}")
                for tta, report in _test_reports(run, data["test"], settings.tta_crops):
                    record = _record(run, report, seed=seed, weighting=weighting, tta=tta, seconds=seconds)
                    records.append(record)
                    progress(_line(record))
                    if on_record is not None:
                        on_record(records)
    return records


def _folder_pixels(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every PNG of a class folder as a flat float vector, its class index, and the class names."""
    from PIL import Image

    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    x, y = [], []
    for index, name in enumerate(names):
        for path in sorted((folder / name).glob("*.png")):
            with Image.open(path) as image:
                x.append(np.asarray(image.convert("RGB"), np.float64).reshape(-1) / 255.0)
            y.append(index)
    return np.stack(x), np.asarray(y), names


def logreg_records(data: Mapping[str, Path], *, seed: int) -> list[dict]:
    """Scikit-learn's logistic regression on the folders' pixels (standardised), scored as the networks are.

    One record per `LOGREG` setting: fitted on ``data["train"]``, scored on ``data["test"]`` (and
    ``data["val"]`` for ``val_balanced_accuracy``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train, names = _folder_pixels(Path(data["train"]))
    x_val, y_val, _ = _folder_pixels(Path(data["val"]))
    x_test, y_test, _ = _folder_pixels(Path(data["test"]))
    smallest = int(np.argmin(np.bincount(y_train, minlength=len(names))))
    records = []
    for name, class_weight in LOGREG.items():
        start = time.perf_counter()
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight=class_weight))
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)
        recall = recall_score(y_test, predicted, average=None, labels=range(len(names)), zero_division=0)
        records.append({
            "seed": seed, "class_weight": name, "tta": False, "class_weights": None, "kept_epoch": None,
            "epochs": None, "test_balanced_accuracy": float(balanced_accuracy_score(y_test, predicted)),
            "test_macro_f1": float(f1_score(y_test, predicted, average="macro", zero_division=0)),
            "test_accuracy": float(np.mean(predicted == y_test)), "smallest_class": names[smallest],
            "test_smallest_class_recall": float(recall[smallest]),
            "test_recall": {label: float(r) for label, r in zip(names, recall)},
            "val_balanced_accuracy": float(balanced_accuracy_score(y_val, model.predict(x_val))),
            "val_macro_f1": None, "wall_seconds": round(time.perf_counter() - start, 1)})
    return records


def folder_test_split(run, test_folder: Path, batch_size: int | None = None):
    """The test folder's images and labels, as the run's validation images are read (size, resize)."""
    from restransfer.data import load_data

    data = run.plan.data
    bundle = load_data(source="folder", path=test_folder, val_path=test_folder, image_size=list(run.plan.image_size),
                       resize=data.resize, batch_size=batch_size or data.batch_size, cache="none")
    if list(bundle.class_names) != list(run.class_names):
        raise ConfigError(f"The test folder's classes {bundle.class_names} differ from the run's {run.class_names}.")
    return bundle.val


def _test_reports(run, test_folder: Path, tta_crops: int):
    """``(tta, report)`` of the run's kept model on the test folder, without and with TTA."""
    from restransfer.diagnostics.evaluation import evaluate_model
    from restransfer.recipe.tta import views_of

    test = folder_test_split(run, test_folder)
    yield False, evaluate_model(run.model, test, run.class_names)[0]
    yield True, evaluate_model(run.model, test, run.class_names, views_of(True, tta_crops or None))[0]


def target_overrides_for(data: Mapping[str, Path]) -> dict[str, Any]:
    """The target recipe's ``data:`` replaced by the folders (its image size, batch and augmentation kept)."""
    overrides: dict[str, Any] = {"data.source": "folder", "data.path": str(data["train"]),
                                 "data.val_path": str(data["val"])}
    if "test" in data:
        overrides["data.test_path"] = str(data["test"])
    return overrides


def train_recipe(recipe: Path, overrides: dict, out: Path):
    """Train ``recipe`` (a folder recipe after `folder_recipe`) with ``overrides`` into ``out``: ``(run, seconds)``."""
    from restransfer.recipe.engine import train
    from restransfer.recipe.load import load_recipe
    from restransfer.recipe.plan import resolve

    start = time.perf_counter()
    plan = resolve(load_recipe(folder_recipe(recipe, overrides)), name=out.name)
    run = train(plan, out=out, force=True, verbose=0)
    return run, time.perf_counter() - start


def folder_recipe(recipe: Path, overrides: Mapping[str, Any]) -> dict:
    """The recipe with ``overrides``; when they switch ``data.source`` to a folder, the digits
    source's own keys (classes, per_class ...) are dropped and the common ones kept."""
    from restransfer.recipe.load import read_yaml, set_key

    tree = read_yaml(recipe)
    if overrides.get("data.source") == "folder":
        common = ("image_size", "batch_size", "augment", "cache", "resize", "shuffle_buffer", "skip_bad",
                  "class_weight")
        tree["data"] = {k: v for k, v in tree["data"].items() if k in common}
    for key, value in overrides.items():
        set_key(tree, key, value)
    return tree


def _record(run, report: dict, *, seed: int, weighting: str, tta: bool, seconds: float) -> dict:
    final = run.metrics["final"]
    smallest = run.class_names[int(np.argmin(run.metrics["final"]["train_counts"]))]
    per_class = report["per_class"]
    return {
        "seed": seed, "class_weight": weighting, "tta": tta,
        "class_weights": run.metrics.get("class_weights"),
        "kept_epoch": final.get("epoch"), "epochs": final.get("epochs"),
        "test_balanced_accuracy": report["balanced_accuracy"], "test_macro_f1": report["macro_f1"],
        "test_accuracy": report["accuracy"],
        "smallest_class": smallest,
        "test_smallest_class_recall": per_class[smallest]["recall"],
        "test_recall": {label: scores["recall"] for label, scores in per_class.items()},
        "val_balanced_accuracy": final.get("val_balanced_accuracy"), "val_macro_f1": final.get("val_macro_f1"),
        "wall_seconds": round(seconds, 1),
    }


def _line(record: dict) -> str:
    return (f"seed {record['seed']} class_weight {record['class_weight']} tta {'on ' if record['tta'] else 'off'}: "
            f"test balanced accuracy {record['test_balanced_accuracy']:.3f}, macro F1 {record['test_macro_f1']:.3f}, "
            f"smallest class recall {record['test_smallest_class_recall']:.3f} (kept epoch {record['kept_epoch']})")


def mean_sd(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    return {"mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0, "n": len(values)}


METRICS = ("test_balanced_accuracy", "test_macro_f1", "test_smallest_class_recall", "val_balanced_accuracy")


def summarize(records: Sequence[dict]) -> dict:
    """Mean +- sd over seeds per (class_weight, tta), and the paired differences of every setting minus ``none``.

    ``auto_minus_none`` (kept by name) and ``minus_none[setting]`` pair each seed's runs on the same folders,
    with ``seeds_higher`` / ``seeds_lower``: on how many seeds the setting scored above / below ``none``.
    """
    groups: dict[tuple[str, bool], list[dict]] = {}
    for record in records:
        groups.setdefault((record["class_weight"], record["tta"]), []).append(record)
    rows = [{"class_weight": weighting, "tta": tta, "seeds": [r["seed"] for r in rows],
             **{metric: mean_sd([r[metric] for r in rows]) for metric in METRICS}}
            for (weighting, tta), rows in groups.items()]
    minus_none: dict[str, dict] = {}
    for (weighting, tta), group in groups.items():
        none = {r["seed"]: r for r in groups.get(("none", tta), [])}
        ours = {r["seed"]: r for r in group}
        seeds = sorted(set(none) & set(ours))
        if weighting == "none" or not seeds:
            continue
        paired = {}
        for metric in METRICS[:3]:
            differences = [ours[s][metric] - none[s][metric] for s in seeds]
            paired[metric] = {**mean_sd(differences), "seeds_higher": sum(d > 0 for d in differences),
                              "seeds_lower": sum(d < 0 for d in differences)}
        minus_none.setdefault(weighting, {})[f"tta_{'on' if tta else 'off'}"] = paired
    return {"rows": rows, "auto_minus_none": minus_none.get("auto", {}), "minus_none": minus_none}


def _cell(stats: dict) -> str:
    return f"{stats['mean']:.3f} +- {stats['sd']:.3f}"


def markdown_summary(summary: dict) -> str:
    lines = ["| class_weight | TTA (flip) | test balanced accuracy | test macro F1 | smallest class (3 images) recall | "
             "recall minus none (seeds higher/lower) |",
             "|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        tta = f"tta_{'on' if row['tta'] else 'off'}"
        paired = summary.get("minus_none", {}).get(row["class_weight"], {}).get(tta, {}).get(
            "test_smallest_class_recall")
        versus = f"{paired['mean']:+.3f} +- {paired['sd']:.3f} ({paired['seeds_higher']}/{paired['seeds_lower']})" \
            if paired else ""
        lines.append(f"| {row['class_weight']} | {'on' if row['tta'] else 'off'} | "
                     f"{_cell(row['test_balanced_accuracy'])} | {_cell(row['test_macro_f1'])} | "
                     f"{_cell(row['test_smallest_class_recall'])} | {versus} |")
    return "\n".join(lines)
