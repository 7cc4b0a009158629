"""Run a recipe: build the model, then for each phase freeze, compile and fit; save everything.

A phase always compiles again: Keras reads ``trainable`` at compile time, and each phase has
its own optimizer and schedule. Frozen BatchNorm layers run in inference mode, so their moving
statistics do not move.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from restransfer.errors import ConfigError
from restransfer.models.heads import classifier
from restransfer.models.registry import create_model
from restransfer.models.stages import freeze_stages, resolve_frozen
from restransfer.recipe.load import dump_recipe, load_recipe
from restransfer.recipe.run import FAILED, FINISHED, RUNNING, Run, RunFolder, TrainingError
from restransfer.recipe.schema import PhaseConfig, Recipe
from restransfer.training import checkpoint, plots
from restransfer.training.callbacks import EpochRecorder
from restransfer.training.distribute import Distribution, scaled_learning_rate, setup_distribution
from restransfer.training.optimizers import build_optimizer, stage_multipliers
from restransfer.training.precision import describe_precision, dtype_policy, resolve_jit_compile
from restransfer.training.schedules import WarmupSchedule

MONITOR = "val_accuracy"


def build_model(recipe: Recipe, num_classes: int, *, load_weights: bool = True) -> keras.Model:
    """The recipe's backbone (RGB 0..255 in) with a new classifier head (float32 probabilities out).

    The head is always new, so weights trained on other classes fine-tune to these classes.
    """
    options = recipe.model.builder_options()
    backbone = create_model(
        recipe.model.name, include_top=False, preprocessing="auto",
        weights=recipe.model.weights if load_weights else None,
        input_shape=(*recipe.image_size, 3), **options,
    )
    if recipe.model.bn_momentum is not None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = recipe.model.bn_momentum
    outputs = classifier(backbone.output, num_classes, dropout=recipe.head.dropout, hidden=recipe.head.hidden)
    return keras.Model(backbone.inputs, outputs, name=recipe.model.name)


def compile_phase(model: keras.Model, phase: PhaseConfig, *, steps_per_epoch: int, num_classes: int,
                  jit_compile: bool, lr_scale: float = 1.0) -> list[str]:
    """Freeze the phase's stages and compile with its optimizer, schedule and loss; return the frozen stages.

    ``lr_scale`` multiplies the phase's learning rate (the recipe's distribution scaling rule).
    """
    frozen = resolve_frozen(model, freeze=phase.freeze, freeze_until=phase.freeze_until)
    freeze_stages(model, frozen)
    total = phase.epochs * steps_per_epoch
    schedule = WarmupSchedule(
        phase.optimizer.learning_rate * lr_scale, total_steps=total,
        warmup_steps=round(phase.schedule.warmup_epochs * steps_per_epoch), decay=phase.schedule.name,
        min_lr=phase.schedule.min_lr, gamma=phase.schedule.gamma,
        milestones=[round(m * steps_per_epoch) for m in phase.schedule.milestones],
    )
    optimizer = build_optimizer(
        phase.optimizer.name, schedule, weight_decay=phase.weight_decay,
        lr_multipliers=stage_multipliers(model, phase.lr_multipliers), **phase.optimizer.keras_options(),
    )
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=phase.label_smoothing),
        metrics=metrics, jit_compile=jit_compile,
    )
    return frozen


def train(recipe: Recipe | str | Path | Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any] | None = None,
          out: str | Path | None = None, *, force: bool = False, verbose: int | str = "auto") -> Run:
    """Train a recipe into a run folder; resume it if the folder holds the same unfinished run.

    Args:
        recipe: a YAML path, a mapping, or a ``Recipe``.
        overrides: ``["phases[0].epochs=3"]`` or ``{"phases[0].epochs": 3}``.
        out: the run folder; default ``runs/<recipe file name>``.
        force: delete a finished (or different) run in ``out`` and train again.
        verbose: Keras' progress output (``"auto"``, 0, 1 or 2); 0 also silences our lines.

    Returns:
        The :class:`Run`: ``model``, ``history``, ``metrics``, ``run_dir``, ``class_names``.

    Example:
        >>> run = train("recipes/quickstart_source.yaml", overrides=["phases[0].epochs=1"], out="runs/try")
        >>> run.metrics["final"]["val_accuracy"]
    """
    if isinstance(recipe, Recipe):
        if overrides:
            raise ConfigError("overrides apply to a recipe file or mapping, not to a validated Recipe.")
        default_name = "run"
    else:
        default_name = Path(recipe).stem if isinstance(recipe, (str, Path)) else "run"
        recipe = load_recipe(recipe, overrides)
    # Before anything runs on the backend: JAX's multi-process start must come first.
    dist = setup_distribution(recipe.distribution.strategy)
    source = RunFolder(out if out is not None else Path("runs") / default_name)
    if dist.is_chief:
        folder, state = source, source.prepare(recipe, force=force)
    else:
        # Only the chief writes the run folder. Another worker computes the same steps, keeps its
        # own files in a scratch folder, and resumes from the chief's last checkpoint.
        folder = RunFolder(tempfile.mkdtemp(prefix="restransfer-worker-"))
        same = source.recipe_text() == dump_recipe(recipe) and (source.info() or {}).get("status") != FINISHED
        state = source.training_state() if same else None
    resuming = state is not None
    folder.write_info(
        model=recipe.model.name, image_size=list(recipe.image_size), resize=recipe.data.resize,
        status=RUNNING, restransfer_version=_version(), backend=keras.backend.backend(), precision=recipe.precision,
    )
    say = _Logger(folder, verbose)
    if resuming and state:
        say(f"Resuming {folder.path} after epoch {state['epoch']} (phase {state['phase'] + 1}/{len(recipe.phases)}).")
    elif resuming:
        say(f"Resuming {folder.path}: no epoch had finished, starting at epoch 1.")
    else:
        say(f"New run in {folder.path}.")
    try:
        with dtype_policy(recipe.precision):
            run = _train(recipe, folder, state or None, say, verbose, dist, source)
    except KeyboardInterrupt:
        say("Interrupted. Rerun the same command to resume from the last complete epoch.")
        raise
    except BaseException as error:
        folder.write_info(status=FAILED, error=str(error).splitlines()[0] if str(error) else type(error).__name__)
        raise
    finally:
        if folder is not source:
            shutil.rmtree(folder.path, ignore_errors=True)
    run.run_dir = source.path
    return run


def _train(recipe: Recipe, folder: RunFolder, state: dict | None, say, verbose, dist: Distribution,
           source: RunFolder) -> Run:
    from restransfer.data import load_data

    keras.utils.set_random_seed(recipe.seed)
    bundle = load_data(**recipe.data.model_dump(), seed=recipe.seed, run_dir=folder.path)
    class_names = list(bundle.class_names)
    names_file = folder.path / "class_names.json"
    if names_file.exists() and checkpoint.read_json(names_file) != class_names:
        raise ConfigError(f"The data's classes {class_names} differ from the run's {checkpoint.read_json(names_file)}; "
                          "the data changed since the run started. Use --out for a new run.")
    checkpoint.write_json(names_file, class_names)
    num_classes = len(class_names)
    say(f"Data: {bundle.num_train} training and {bundle.num_val} validation images, {num_classes} classes, "
        f"{recipe.image_size[0]}x{recipe.image_size[1]} px, batch {recipe.data.batch_size}.")

    say(dist.describe(recipe.data.batch_size) + ".")
    lr_scale = scaled_learning_rate(1.0, recipe.distribution.lr_scaling, recipe.data.batch_size,
                                    recipe.distribution.base_batch_size)
    if lr_scale != 1.0:
        say(f"Learning rates scaled x{lr_scale:g} (linear rule, base batch {recipe.distribution.base_batch_size}).")
    with dist.scope():
        model = build_model(recipe, num_classes, load_weights=state is None)
        if state:
            checkpoint.restore_weights(model, source.checkpoints, state)
    weights = recipe.model.weights or "none (random initialisation)"
    say(f"Model: {recipe.model.name}, weights {weights if state is None else 'from checkpoint ' + state['checkpoint']}; "
        f"new head with {num_classes} classes.")
    jit_compile, why = resolve_jit_compile(recipe.jit_compile)
    say(f"XLA jit_compile: {'on' if jit_compile else 'off'} ({why}).")
    folder.write_info(preprocessing=model.get_layer("preprocess").mode, jit_compile=jit_compile)

    if dist.strategy == "multi_worker":
        # Keras splits each global batch across processes and needs its size fixed in the graph;
        # the last partial batch of an epoch is dropped.
        batch = recipe.data.batch_size
        evaluation_data = bundle.val
        bundle.train = bundle.train.rebatch(batch, drop_remainder=True)
        if bundle.val is not None:
            bundle.val = bundle.val.rebatch(batch, drop_remainder=True)
        say(f"multi_worker: batches of exactly {batch}; up to {batch - 1} images per epoch and per "
            "validation pass are left out (not from the final evaluation).")
    else:
        evaluation_data = bundle.val
    steps_per_epoch = _steps_per_epoch(bundle, recipe.data.batch_size)
    history: list[dict] = list(state.get("history", [])) if state else []
    best = dict(state.get("best", {})) if state else {}
    done_epochs = state["epoch"] if state else 0
    offset = 0
    for index, phase in enumerate(recipe.phases):
        start, end = offset, offset + phase.epochs
        offset = end
        if done_epochs >= end:
            continue
        name = recipe.phase_name(index)
        with dist.scope():
            frozen = compile_phase(model, phase, steps_per_epoch=steps_per_epoch, num_classes=num_classes,
                                   jit_compile=jit_compile, lr_scale=lr_scale)
            if state and start < done_epochs:
                checkpoint.restore_optimizer(model, source.checkpoints, state)
        _print_stage_table(model, say, title=f"{name}: frozen {frozen or 'nothing'}")
        say(f"Phase {index + 1}/{len(recipe.phases)} '{name}': epochs {max(start, done_epochs) + 1}-{end}, "
            f"{phase.optimizer.name} lr {phase.optimizer.learning_rate:g} ({phase.schedule.name}, "
            f"warmup {phase.schedule.warmup_epochs:g} epochs), weight decay {phase.weight_decay:g}, "
            f"label smoothing {phase.label_smoothing:g}"
            + (f", lr multipliers {phase.lr_multipliers}" if phase.lr_multipliers else "") + ".")
        say(describe_precision(model) + ".")
        recorder = EpochRecorder(
            folder.checkpoints, history, {"phase": index, "phase_name": name}, bundle.num_train,
            on_epoch=folder.write_history, monitor=MONITOR, best=best,
        )
        callbacks = [recorder, keras.callbacks.TensorBoard(log_dir=str(folder.logs), write_graph=False)]
        try:
            model.fit(bundle.train, validation_data=bundle.val, epochs=end, initial_epoch=max(start, done_epochs),
                      callbacks=callbacks, verbose=verbose, shuffle=False)  # tf.data shuffles itself
        except Exception as error:
            if dist.strategy != "multi_worker":
                raise
            # A lost peer surfaces as a failed collective (e.g. gloo's "Connection reset by peer").
            raise TrainingError(
                f"multi_worker training stopped on the {dist.worker}: {str(error).strip().splitlines()[-1]} "
                f"Every worker must stay up; the chief's run folder keeps the last complete epoch "
                f"({len(recorder.history)}). Start every worker again with the same command to resume.") from error
        best = recorder.best
        if recorder.bad_loss is not None:
            bad = recorder.bad_loss
            kept = f"epoch {history[-1]['epoch']}" if history else "none (no epoch finished)"
            raise TrainingError(
                f"The training loss became {bad['loss']} in epoch {bad['epoch']} (phase '{name}', batch "
                f"{bad['batch']}); training stopped. The last good checkpoint is kept: {kept}, in "
                f"{folder.checkpoints}. Lower phases[{index}].optimizer.learning_rate (or add warmup, or "
                "use precision float32) and train again with --force, or with --out for a new folder.")
        done_epochs = end
    with dist.local(model) as local_model:
        finished = _finish(recipe, folder, local_model, bundle, evaluation_data, class_names, history, best, say,
                           dist.is_chief)
    finished.model = model
    return finished


def _finish(recipe, folder: RunFolder, model, bundle, evaluation_data, class_names, history, best, say,
            is_chief: bool) -> Run:
    from restransfer.recipe.evaluate import evaluation_report, predict_dataset

    probabilities, labels = predict_dataset(model, evaluation_data)
    report = evaluation_report(probabilities, labels, class_names)
    phases = []
    for index, _ in enumerate(recipe.phases):
        rows = [r for r in history if r["phase"] == index]
        phases.append({
            "name": recipe.phase_name(index), "epochs": len(rows),
            "val_accuracy": rows[-1].get("val_accuracy"), "val_loss": rows[-1].get("val_loss"),
            "best_val_accuracy": max((r.get("val_accuracy", 0.0) for r in rows), default=None),
            **_timing(rows, bundle.num_train),
        })
    final = {"val_accuracy": report["accuracy"], "val_loss": report["loss"], "epochs": len(history),
             **_timing(history, bundle.num_train), "num_train": bundle.num_train, "num_val": bundle.num_val}
    if "top5_accuracy" in report:
        final["val_top5_accuracy"] = report["top5_accuracy"]
    metrics = {"phases": phases, "final": final, "best": best, "per_class": report["per_class"],
               "confusion_matrix": report["confusion_matrix"]}
    checkpoint.write_json(folder.path / "metrics.json", metrics)
    plots.plot_history(history, folder.plots / "training_curves.png", title=f"{recipe.model.name}: {folder.path.name}")
    plots.plot_confusion_matrix(np.asarray(report["confusion_matrix"]), class_names,
                                folder.plots / "confusion_matrix.png",
                                title=f"validation: accuracy {report['accuracy']:.3f}")
    save_inference_model(model, folder.model_file)
    folder.write_info(status=FINISHED, error=None)
    say(f"Finished: val_accuracy {final['val_accuracy']:.4f}, val_loss {final['val_loss']:.4f}, "
        f"{final['epochs']} epochs in {final['seconds']:.1f} s ({final['images_per_s']:.0f} images/s).")
    for fmt in recipe.export if is_chief else ():
        from restransfer.export import export_run

        say(f"Export {fmt}: {export_run(folder.path, format=fmt)}")
    return Run(model=model, history=history, metrics=metrics, run_dir=folder.path, class_names=class_names,
               recipe=recipe)


def save_inference_model(model: keras.Model, path: Path) -> None:
    """Save an uncompiled copy with every layer trainable (no optimizer, no frozen flags) atomically."""
    copy = keras.models.clone_model(model)
    for source, target in zip(model.layers, copy.layers):
        target.set_weights(source.get_weights())
    for layer in copy.layers:
        layer.trainable = True
    checkpoint.atomic_write(path, copy.save)


def _timing(rows: list[dict], num_train: int) -> dict:
    seconds = float(sum(r.get("seconds", 0.0) for r in rows))
    rates = [r["images_per_s"] for r in rows if r.get("images_per_s")]
    return {"seconds": round(seconds, 2), "images_per_s": round(float(np.mean(rates)), 1) if rates else 0.0}


def _steps_per_epoch(bundle, batch_size: int) -> int:
    cardinality = getattr(bundle.train, "cardinality", None)
    if cardinality is not None:
        steps = int(cardinality())
        if steps > 0:
            return steps
    return max(1, math.ceil(bundle.num_train / batch_size))


def _print_stage_table(model, say, title: str) -> None:
    from rich.console import Console

    from restransfer.diagnostics.complexity import render_stage_table

    table = render_stage_table(model, show_trainable=True)
    table.caption = title
    if say.verbose:
        Console().print(table)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    say(f"Parameters: {model.count_params():,} ({trainable:,} trainable).")


class _Logger:
    """Print a line (unless quiet) and append it to the run's ``train.log``."""

    def __init__(self, folder: RunFolder, verbose):
        self.folder = folder
        self.verbose = verbose != 0

    def __call__(self, line: str) -> None:
        if self.verbose:
            print(line, flush=True)
        self.folder.log(line)


def _version() -> str:
    from restransfer import __version__

    return __version__
