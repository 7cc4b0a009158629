"""Export a run folder: its model, class names, recipe and metrics, verified and scored on its data.

The run's Plan says how the model sees images (size, resize) and where its data is, so this lives
with the recipe; ``restransfer.export.export_model`` does the format work.

Example:
    >>> from restransfer import export_run
    >>> result = export_run("runs/flowers", "saved_model")   # -> runs/flowers/export/saved_model
    >>> result.verification.passed
    True
"""

from __future__ import annotations

import os

from restransfer.data import load_data
from restransfer.data.sources import MAX_IMAGE_PIXELS
from restransfer.errors import ConfigError, RestransferError
from restransfer.export.artifact import ExportError, ExportResult, check_format, check_target
from restransfer.export.model_card import write_model_card
from restransfer.export.model_export import REPRESENTATIVE_COUNT, SampleSource, export_model
from restransfer.models.loading import load_run_model
from restransfer.recipe.plan import run_plan
from restransfer.runs import RunFolder, RunInUseError


def export_run(run_dir: str | os.PathLike, format: str, out: str | os.PathLike | None = None, *,
               quantize: str | None = None, verify: bool = True, samples: SampleSource = None,
               max_pixels: int = MAX_IMAGE_PIXELS, holding_lock: bool = False,
               representative_count: int = REPRESENTATIVE_COUNT) -> ExportResult:
    """Export a run folder's ``model.keras`` (default to ``RUN/export/<format>``).

    The resolved recipe and the metrics ship with the export. Sample images for verification
    come from ``samples``, else from the recipe's validation data, else are synthetic. The export
    holds the run folder's lock (``holding_lock``: the caller already holds it), so a ``train``
    into the folder cannot replace model.keras while it is exported; export.json records the
    model file's SHA-256. ``quantize="int8"`` calibrates on ``representative_count`` of the run's
    training images, un-augmented and resized as in training.

    Example:
        >>> export_run("runs/flowers", "tflite", quantize="float16")
    """
    check_format(format, quantize)
    folder = RunFolder(run_dir)
    lock = None
    if not holding_lock and folder.path.is_dir():
        try:
            lock = folder.lock()
        except (RunInUseError, ConfigError) as error:
            raise ExportError(f"Cannot export {folder.path} now: {error}") from None
        except OSError:
            pass  # a read-only run folder: no train can write it either
    try:
        return _export_run(folder, format, out, quantize, verify, samples, max_pixels, representative_count)
    finally:
        if lock is not None:
            lock.release()


def _export_run(folder, format, out, quantize, verify, samples, max_pixels,
                representative_count) -> ExportResult:
    try:
        model = load_run_model(folder)
        class_names = folder.check_outputs(model)
        plan = run_plan(folder)
        thresholds = folder.thresholds() if plan.task == "multi_label" else None
        if plan.task == "multi_label" and thresholds is None:
            raise ConfigError("it is a multi_label run without thresholds.json (its per-label thresholds); restore "
                              "it or train the run again")
    except ConfigError as error:
        raise ExportError(f"Cannot export {folder.path}: {error}") from None
    out = check_target(out if out is not None else folder.path / "export" / format)
    # Sample images: the run's validation images when its data is readable here; else synthetic
    # images still verify the numerics (the manifest records which were used).
    data = _run_data(plan)
    validation = data.val if data is not None else None
    if samples is None:
        samples = validation
    representative = None
    if quantize == "int8" and data is not None:
        representative = data.train_unaugmented if data.train_unaugmented is not None else data.train
    result = export_model(
        model, out, format, class_names, image_size=plan.image_size, samples=samples, quantize=quantize,
        verify=verify, resize=plan.data.resize, max_pixels=max_pixels,
        assets={"recipe": folder.recipe_file, "metrics": folder.path / "metrics.json"},
        source_model=folder.model_file, representative=representative,
        representative_count=representative_count, score_on=validation,
        thresholds=None if thresholds is None else list(thresholds.values()),
    )
    if result.path.parent == (folder.path / "export").absolute():
        write_model_card(folder.path.absolute(), plan.recipe, class_names, data.counts if data is not None else None,
                         thresholds)
    return result


def _run_data(plan):
    """The run's un-augmented data, or None when it is not readable here (moved, offline, arrays)."""
    if plan.data.source == "arrays":
        return None
    try:
        return load_data(**plan.data_options(augment={}))
    except RestransferError:
        return None


__all__ = ["export_run"]
