"""``restransfer evaluate RUN``: load a finished run and its data, then evaluate it.

The scoring itself is ``restransfer.diagnostics.evaluation`` (the path training's end takes
too); this module only finds what a run's recipe says about its data.
"""

from __future__ import annotations

from pathlib import Path

from restransfer.errors import ConfigError


def evaluate(run_dir: str | Path, *, data: str | Path | None = None, split: str = "val",
             batch_size: int | None = None, top_losses: int = 16, tta: bool = False,
             tta_crops: int | None = None) -> dict:
    """Evaluate a finished run's ``model.keras`` on its validation (or test) data or on a folder.

    Args:
        run_dir: the run folder.
        data: a folder with one subfolder per class (the run's class names); default: the
            recipe's own data. The folder alone is enough: the run's original data and weights
            need not exist any more.
        split: ``"val"`` or ``"test"`` of the recipe's data (ignored with ``data``).
        batch_size: images per batch; default the recipe's.
        top_losses: how many highest-loss images ``plots/top_losses[-NAME].png`` shows.
        tta: average the probabilities over each image and its horizontal flip.
        tta_crops: average that many crops (0-5) too (`restransfer.data.tta`).

    Returns:
        The report of ``evaluation_report``, also saved as ``evaluation[-NAME].json`` with a
        confusion matrix PNG in ``plots/``, and the interpretation files of :func:`interpret`
        beside it (``top_losses.png``, ``top_losses.csv``, ``most_confused.csv``).
    """
    report, _ = _evaluate(run_dir, data=data, split=split, batch_size=batch_size, top_losses=top_losses,
                          tta=tta, tta_crops=tta_crops)
    return report


def interpret(run_dir: str | Path, *, data: str | Path | None = None, split: str = "val",
              batch_size: int | None = None, top_losses: int = 16):
    """What a run's model gets wrong: its highest-loss images and most confused class pairs.

    Evaluates like :func:`evaluate` (and writes the same files) and returns the
    ``restransfer.diagnostics.interpret.Interpretation``: ``top_losses`` (path, true,
    predicted, probability, loss), ``most_confused`` ``(true, predicted, count)`` and ``files``.

    Example:
        >>> found = interpret("runs/quickstart/target")
        >>> found.most_confused[0]
        ('5', '9', 30)
    """
    _, found = _evaluate(run_dir, data=data, split=split, batch_size=batch_size, top_losses=top_losses)
    return found


def _evaluate(run_dir, *, data, split, batch_size, top_losses, tta=False, tta_crops=None):
    from restransfer.data import load_data
    from restransfer.diagnostics.evaluation import evaluate_model, headline
    from restransfer.diagnostics.interpret import write_evaluation_plots
    from restransfer.files import write_json
    from restransfer.models.loading import load_run_model
    from restransfer.recipe.plan import run_plan
    from restransfer.recipe.tta import views_of
    from restransfer.runs import RunFolder

    folder = RunFolder(run_dir)
    model = load_run_model(folder)
    class_names = folder.check_outputs(model)
    plan = run_plan(folder)
    options = plan.data_options(augment={})
    if data is not None and plan.task == "multi_label":
        raise ConfigError(f"--data {data}: a folder gives one class per image, and this run is multi_label; evaluate "
                          "it on its recipe's data (--split val or test), or train on a CSV that lists these images.")
    if data is not None:
        data_path = Path(data).expanduser().resolve()
        if not data_path.is_dir():
            raise ConfigError(f"--data {data} is not a folder; give a folder with one subfolder per class.")
        keep = {k: options[k] for k in ("image_size", "resize", "batch_size", "skip_bad", "seed")}
        # Nothing of the recipe's data is needed; a file cache would need the run folder.
        cache = "auto" if options.get("cache") == "file" else options.get("cache", "auto")
        options = {**keep, "cache": cache, "source": "folder", "path": data_path, "val_path": data_path}
        suffix, split = "-" + data_path.name, "val"
    else:
        if plan.data.source == "arrays":
            raise ConfigError("This run trained on in-memory arrays; pass --data FOLDER to evaluate it.")
        suffix = "" if split == "val" else f"-{split}"
    if batch_size:
        options["batch_size"] = batch_size
    bundle = load_data(**options, run_dir=None)
    if list(bundle.class_names) != list(class_names):
        raise ConfigError(f"The evaluation data's classes {bundle.class_names} differ from the run's "
                          f"classes {class_names}.")
    dataset = bundle.val if split == "val" else bundle.test
    if dataset is None:
        raise ConfigError(f"The run's data has no {split} split.")
    views = views_of(tta, tta_crops)
    if views:
        suffix += "-tta"
    thresholds = folder.thresholds() if plan.task == "multi_label" else None
    if plan.task == "multi_label" and thresholds is None:
        raise ConfigError(f"{folder.path} is a multi_label run without thresholds.json (the per-label thresholds "
                          "chosen on its validation data when training ended); restore it or train the run again.")
    report, probabilities, labels = evaluate_model(
        model, dataset, class_names, views, task=plan.task,
        thresholds=None if thresholds is None else list(thresholds.values()),
        thresholds_from="the run's thresholds.json (each label's best F1 on the validation set when training ended)")
    report["data"] = str(data) if data is not None else f"recipe {split} split"
    report["tta"] = [view.name for view in views] if views else None
    write_json(folder.path / f"evaluation{suffix}.json", report)
    found = write_evaluation_plots(report, probabilities, labels, class_names, dataset=dataset, out_dir=folder.plots,
                                   paths=bundle.paths.get(split), title=f"{report['data']}: {headline(report)}",
                                   n=top_losses, split=split, suffix=suffix)
    report["interpretation"] = {name: str(path) for name, path in found.files.items()}
    return report, found
