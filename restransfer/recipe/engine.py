"""Run a Plan: build the model, then for each phase freeze, compile and fit; save everything.

A phase always compiles again: Keras reads ``trainable`` at compile time, and each phase has
its own optimizer and schedule. Frozen BatchNorm layers run in inference mode, so their moving
statistics do not move; after a phase in which BatchNorm layers trained, precise BN (recipe key
``precise_bn``) recomputes theirs from the training images before anything is evaluated or saved.

``train`` is a short sequence of named steps: open the run folder (new, restart or resume),
load the data, build the model, start the head, fit each phase (then precise BN), finish
(evaluate, save, plot, export).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from restransfer.diagnostics.evaluation import (
    end_of_data_quiet,
    evaluate_model,
    headline,
    predict_dataset,
    quiet_evaluate,
)
from restransfer.errors import ConfigError, DataError, TrainingError
from restransfer.files import atomic_write, read_json, write_json
from restransfer.models.heads import classifier
from restransfer.models.registry import create_model
from restransfer.models.stages import freeze_stages
from restransfer.recipe.plan import PhasePlan, Plan, load_plan
from restransfer.recipe.schema import PhaseConfig, Recipe
from restransfer.runs import FAILED, FINISHED, NEW, RUNNING, RunFolder, Start, start_from
from restransfer.training import checkpoint, plots
from restransfer.training.best_epoch import better
from restransfer.training.callbacks import EpochLine, EpochRecorder, EpochSeeds, epoch_tensorboard
from restransfer.training.class_weights import weigh_batches
from restransfer.training.distribute import Distribution, setup_distribution
from restransfer.training.head_init import init_head_from_probe, zero_classifier
from restransfer.training.optimizers import build_optimizer, stage_multipliers
from restransfer.training.precise_bn import precise_bn, precise_bn_steps, trainable_batch_norms
from restransfer.training.precision import describe_precision, dtype_policy
from restransfer.training.schedules import WarmupSchedule
from restransfer.training.task import make_loss, make_metrics, metric_names, task_data_problem
from restransfer.training.tracing import build_before_fit


@dataclass
class Run:
    """A training run: the trained model, its history and metrics, and where it is saved.

    Attributes:
        model: the trained ``keras.Model`` (RGB 0..255 in, float32 probabilities out).
        history: one dict per epoch (also ``history.csv``).
        metrics: ``metrics.json``: per phase and ``final``.
        run_dir: the run folder.
        class_names: label of each output.
        plan: the resolved plan it ran.
    """

    model: keras.Model
    history: list[dict]
    metrics: dict
    run_dir: Path
    class_names: list[str]
    plan: Plan = field(repr=False, default=None)

    @property
    def recipe(self) -> Recipe:
        return self.plan.recipe


def build_model(plan: Plan, num_classes: int, *, load_weights: bool = True) -> keras.Model:
    """The plan's backbone (RGB 0..255 in) with a new classifier head (float32 probabilities out).

    The head is always new, so weights trained on other classes fine-tune to these classes.
    """
    spec = plan.model
    backbone = create_model(spec.name, weights=spec.weights if load_weights else None, **spec.options)
    if spec.bn_momentum is not None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = spec.bn_momentum
    head = plan.head
    outputs = classifier(backbone.output, num_classes, dropout=head.dropout, hidden=head.hidden,
                         activation=plan.decisions.head_activation.value)
    return keras.Model(backbone.inputs, outputs, name=spec.name)


def phase_optimizer(model: keras.Model, phase: PhaseConfig | PhasePlan, learning_rate,
                    lr_multipliers: Mapping[str, float] | None = None) -> keras.optimizers.Optimizer:
    """The phase's optimizer at ``learning_rate`` (a float or a schedule), with its weight decay, options
    and per-stage rate factors for ``model``'s variables (default: the phase's own, without the head's)."""
    return build_optimizer(
        phase.optimizer.name, learning_rate, weight_decay=phase.weight_decay,
        lr_multipliers=stage_multipliers(model, phase.lr_multipliers if lr_multipliers is None else lr_multipliers),
        **phase.optimizer.keras_options(),
    )


def phase_loss(phase: PhaseConfig | PhasePlan, loss: str = "categorical_crossentropy",
               prior: Sequence[float] | None = None) -> keras.losses.Loss:
    """The decided ``loss`` (`RunDecisions.loss`) with the phase's label smoothing; logit-adjusted by
    ``prior`` (each class's share of the training images, `RunDecisions.logit_adjustment`) if given."""
    if prior is not None:
        from restransfer.training.logit_adjustment import LogitAdjustedCrossentropy

        return LogitAdjustedCrossentropy(prior, label_smoothing=phase.label_smoothing)
    return make_loss(loss, phase.label_smoothing)


def compile_phase(model: keras.Model, phase: PhaseConfig | PhasePlan, *, frozen: Sequence[str], steps_per_epoch: int,
                  num_classes: int, jit_compile: bool, learning_rate: float | None = None,
                  lr_multipliers: Mapping[str, float] | None = None, trainer: keras.Model | None = None,
                  loss: str = "categorical_crossentropy", metrics: Sequence[str] | None = None,
                  prior: Sequence[float] | None = None) -> None:
    """Freeze ``frozen`` stages and compile with the phase's optimizer, schedule and loss.

    ``loss`` and ``metrics`` are the run's decisions (default: single-label's).

    ``learning_rate`` is the schedule's peak (default: the phase's own, unscaled);
    ``lr_multipliers`` are per-stage factors (default: the phase's own, without the head's).
    ``trainer`` is compiled instead of ``model`` when the phase fits a model over some of
    ``model``'s layers (the feature cache's suffix). ``prior`` logit-adjusts the loss (`phase_loss`).
    """
    freeze_stages(model, frozen)
    total = phase.epochs * steps_per_epoch
    schedule = WarmupSchedule(
        phase.optimizer.learning_rate if learning_rate is None else learning_rate, total_steps=total,
        warmup_steps=round(phase.schedule.warmup_epochs * steps_per_epoch), decay=phase.schedule.name,
        min_lr=phase.schedule.min_lr, gamma=phase.schedule.gamma,
        milestones=[round(m * steps_per_epoch) for m in phase.schedule.milestones],
    )
    names = metric_names("single_label", num_classes)[0] if metrics is None else metrics
    trainer = trainer or model
    trainer.compile(optimizer=phase_optimizer(model, phase, schedule, lr_multipliers),
                    loss=phase_loss(phase, loss, prior), metrics=make_metrics(names, num_classes),
                    jit_compile=jit_compile)
    build_before_fit(trainer)


@dataclass(frozen=True)
class PhaseOutcome:
    """What a phase's fit left behind for the run's end and its checkpoint.

    Attributes:
        optimizer: the fitted optimizer (a feature-cache suffix's when it trained one).
        feature_cache: what was cached (``metrics.json``), None when it trained on the images.
        precise_bn: what the precise-BN pass did (``metrics.json``), None when none ran.
    """

    optimizer: Any = None
    feature_cache: dict | None = None
    precise_bn: dict | None = None


@dataclass
class _Session:
    """One process's part of a run: the Plan, where it writes, where it resumes from, how it logs.

    ``plan`` is set twice: when the session opens (what the recipe alone decides), then once the
    data and the model are known (every decision, `restransfer.recipe.decisions.decide`).
    ``outcomes`` gets one entry per phase, when the phase (and its precise BN) is done.
    """

    plan: Plan
    folder: RunFolder  # what this process writes (the run folder, or a worker's scratch copy)
    run: RunFolder  # the run folder itself, where checkpoints are restored from
    start: Start
    dist: Distribution
    say: _Logger
    verbose: int | str
    lock: Any = None  # the run folder's lock, held by the chief for the whole run
    outcomes: dict[int, PhaseOutcome] = field(default_factory=dict)  # phase index -> its outcome
    callbacks: list = field(default_factory=list)  # the caller's, added to every phase's fit
    tracker: Any = None  # the MLflow tracker (recipe key tracking.mlflow), on the chief
    phase_reports: dict[int, dict] = field(default_factory=dict)  # phase index -> its end's scores


def train(recipe: Plan | Recipe | str | Path | Mapping[str, Any],
          overrides: Sequence[str] | Mapping[str, Any] | None = None,
          out: str | Path | None = None, *, force: bool = False, verbose: int | str = "auto",
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> Run:
    """Train a recipe into a run folder; resume it if the folder holds the same unfinished run.

    Args:
        recipe: a resolved ``Plan``, a ``Recipe``, a YAML path or a mapping.
        overrides: ``["phases[0].epochs=3"]`` or ``{"phases[0].epochs": 3}`` (files and mappings).
        out: the run folder; default ``runs/<recipe file name>``.
        force: delete a finished (or different) run in ``out`` and train again.
        verbose: Keras' progress output (``"auto"``, 0, 1 or 2); 0 also silences our lines.
        callbacks: more Keras callbacks for every phase's ``fit`` (a sweep's pruning callback).

    Returns:
        The :class:`Run`: ``model``, ``history``, ``metrics``, ``run_dir``, ``class_names``.

    Example:
        >>> run = train("recipes/quickstart_source.yaml", overrides=["phases[0].epochs=1"], out="runs/try")
        >>> run.metrics["final"]["val_accuracy"]
    """
    if isinstance(recipe, Plan):
        if overrides:
            raise ConfigError("overrides apply to a recipe file or mapping, not to a resolved Plan.")
        plan = recipe
    else:
        plan = load_plan(recipe, overrides)
    # Before anything runs on the backend: JAX's multi-process start must come first.
    dist = setup_distribution(plan.strategy)
    session = _open_session(plan, RunFolder(out if out is not None else Path("runs") / plan.name), force, dist,
                            verbose)
    session.callbacks = list(callbacks)
    folder = session.folder
    try:
        if dist.is_chief:
            from restransfer.recipe.tracking import open_tracker

            session.tracker = open_tracker(plan, folder, session.say)
            if session.tracker is not None:
                session.callbacks.append(session.tracker.callback())
        with dtype_policy(plan.precision):
            result = _train(session)
    except KeyboardInterrupt:
        session.say("Interrupted. Rerun the same command to resume from the last complete epoch.")
        if session.tracker is not None:
            session.tracker.fail()
        raise
    except BaseException as error:
        try:
            folder.write_info(status=FAILED, error=str(error).splitlines()[0] if str(error) else type(error).__name__)
        except OSError:
            pass  # the disk that failed the run cannot take run.json either: report the first error
        if session.tracker is not None:
            session.tracker.fail()
        raise
    finally:
        if folder is not session.run:
            shutil.rmtree(folder.path, ignore_errors=True)
        if session.lock is not None:
            session.lock.release()
    dist.leave()
    return result


def _open_session(plan: Plan, run: RunFolder, force: bool, dist: Distribution, verbose) -> _Session:
    """Decide new, restart or resume; a non-chief worker gets a scratch folder of its own."""
    lock = None
    if dist.is_chief:
        # Held until the run ends: a second `train` into this folder is refused while we live.
        lock = run.lock()
        try:
            run.remove_temporaries()
            folder, start = run, run.prepare(plan.text, force=force)
        except BaseException:
            lock.release()
            raise
    else:
        # Only the chief writes the run folder. Another worker computes the same steps, keeps its
        # own files in a scratch folder, and resumes from the chief's last checkpoint.
        folder = RunFolder(tempfile.mkdtemp(prefix="restransfer-worker-"))
        same = run.recipe_text() == plan.text and (run.info() or {}).get("status") != FINISHED
        start = start_from(run.training_state()) if same else Start(NEW)
    folder.write_info(
        model=plan.model.name, image_size=list(plan.image_size), resize=plan.data.resize, status=RUNNING,
        restransfer_version=_version(), backend=keras.backend.backend(), precision=plan.precision,
    )
    say = _Logger(folder, verbose)
    say(start.describe(folder, len(plan.phases)))
    return _Session(plan=plan, folder=folder, run=run, start=start, dist=dist, say=say, verbose=verbose,
                    lock=lock)


def _train(session: _Session) -> Run:
    say = session.say
    keras.utils.set_random_seed(session.plan.seed)
    bundle, class_names = _load_data(session)
    model = _build(session, len(class_names))
    evaluation_data, calibration_data = bundle.val, bundle.val_calibration
    if bundle.val_monitor is not None:
        bundle.val = bundle.val_monitor  # every choice while training: best epoch, early stopping, phase ends
    if session.dist.strategy == "multi_worker":
        _fixed_size_batches(bundle, session.plan.data.batch_size, say)
    plan = session.plan = _decide(session, bundle, model)
    jit_compile = plan.decisions.jit_compile.value
    session.folder.write_info(preprocessing=model.get_layer("preprocess").mode, jit_compile=jit_compile)
    if session.start.state is None:
        _init_head(session, model, bundle)
    history, best = session.start.history, session.start.best
    session.phase_reports = _read_phase_reports(session)
    # A checkpoint saved after its phase's end (precise BN, its scoring) marks it: a rerun (a kill
    # while exporting) must not redo that end, which would change a finished phase's weights.
    ended = bool((session.start.state or {}).get("phase_ended"))
    for phase in plan.phases:
        if session.start.epochs_done < phase.end_epoch:
            best, optimizer, cached = _fit_phase(session, model, phase, bundle, history, best,
                                                 num_classes=len(class_names), jit_compile=jit_compile)
            _record_phase(session, phase, feature_cache=cached)
            precise = _precise_bn(session, model, phase, bundle, None, None)
            best, improved = _phase_end(session, model, phase, bundle, class_names, best, history, precise)
            _record_phase(session, phase, precise_bn=precise)
            if precise or improved:
                checkpoint.save_checkpoint(model, session.folder.checkpoints, {
                    "phase": phase.index, "phase_name": phase.name, "epoch": phase.end_epoch, "history": history,
                    "best": best, "phase_ended": True}, optimizer=optimizer)
            session.outcomes[phase.index] = PhaseOutcome(optimizer=optimizer, feature_cache=cached,
                                                         precise_bn=precise)
        elif session.start.epochs_done == phase.end_epoch and not ended:
            # Stopped between the phase's last epoch and its pass: the pass depends only on the
            # weights and the data, so running it again gives the same statistics.
            precise = _precise_bn(session, model, phase, bundle, None, None)
            best, _ = _phase_end(session, model, phase, bundle, class_names, best, history, precise)
            _record_phase(session, phase, precise_bn=precise)
            session.outcomes[phase.index] = PhaseOutcome(precise_bn=precise)
    _keep_best(session, model, bundle, history, best)
    with session.dist.local(model) as local_model:
        run = _finish(session, local_model, bundle, evaluation_data, class_names, history, best,
                      calibration_data=calibration_data)
    run.model = model
    return run


def _decide(session: _Session, bundle, model: keras.Model) -> Plan:
    """Every decision, from the data's facts, the model and the machine; each logged with its reason."""
    from restransfer.data.pipeline import memory_budget
    from restransfer.recipe.decisions import DataFacts, decide, log_lines
    from restransfer.training.precision import has_accelerator

    plan = session.plan
    facts = DataFacts.of(bundle, plan.data.batch_size)
    decided = decide(plan, facts, model=model, accelerator=has_accelerator(), memory_budget=memory_budget())
    for line in log_lines(decided):
        session.say(line)
    return decided


def _load_data(session: _Session):
    """The data bundle and its class names, which must be the run's if it is resumed."""
    from restransfer.data import load_data

    plan, folder = session.plan, session.folder
    holdout = plan.decisions.calibration_holdout.value
    bundle = load_data(**plan.data_options(), run_dir=folder.path, calibration_holdout=holdout)
    if problem := task_data_problem(plan.task, bundle.multi_label, f"The {plan.data.source} data"):
        raise DataError(problem)
    class_names = list(bundle.class_names)
    names_file = folder.path / "class_names.json"
    stored = folder.class_names() if os.path.lexists(names_file) else class_names  # bounded, checked
    if stored != class_names:
        raise ConfigError(f"The data's classes {class_names} differ from the run's {stored}; "
                          "the data changed since the run started. Use --out for a new run.")
    write_json(names_file, class_names)
    batch = plan.data.batch_size
    session.say(f"Data: {bundle.num_train} training and {bundle.num_val} validation images, {len(class_names)} "
                f"classes, {plan.image_size[0]}x{plan.image_size[1]} px, batch {batch}.")
    if bundle.val_calibration is not None:
        held = bundle.num_val_calibration
        session.say(f"Validation images: {bundle.num_val - held} choose the kept epoch, the other {held} fit the "
                    "temperature (calibration_holdout); the final evaluation scores all of them.")
    if bundle.train_left_out:
        left = bundle.train_left_out
        session.say(f"Training batches: {bundle.train_batches} of {batch} per epoch; the last {left} image(s) of "
                    f"each shuffled epoch are left out (a {left}-image batch gives noisy BatchNorm statistics and "
                    "a full-weight step), other ones each epoch, so every image trains.")
    return bundle, class_names


def _build(session: _Session, num_classes: int) -> keras.Model:
    """The model under the distribution's scope: fresh weights, or the checkpoint's when resuming."""
    plan, start = session.plan, session.start
    session.say(session.dist.describe(plan.data.batch_size) + ".")
    with session.dist.scope(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model(plan, num_classes, load_weights=start.state is None)
        if start.state:
            checkpoint.restore_weights(model, session.run.checkpoints, start.state)
    for warning in caught:
        # The weight loader's notes (a classifier head skipped ...) are part of the run's story:
        # said as our own line, kept in train.log (the report lists them); others pass on.
        if issubclass(warning.category, UserWarning) and "restransfer" in warning.filename:
            session.say(f"Weights: {' '.join(str(warning.message).split())}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    weights = plan.model.weights if start.state is None else f"from checkpoint {start.state['checkpoint']}"
    session.say(f"Model: {plan.model.name}, weights {weights}; new head with {num_classes} classes.")
    return model


def _init_head(session: _Session, model: keras.Model, bundle) -> None:
    """Start the new classifier as the plan decided (a new or restarted run only)."""
    decisions = session.plan.decisions
    weights = decisions.class_weights.value
    how = init_head(model, bundle, decisions.head_init.value,
                    class_weight=None if weights is None else np.array(list(weights.values()), np.float32),
                    prior=_prior_vector(session.plan))
    session.say(f"Head ({decisions.head_init.reason}): {how}; learning rate x{decisions.head_lr_multiplier.value:g} "
                "of each phase's unless the phase sets lr_multipliers.head.")


def init_head(model: keras.Model, bundle, init: str, class_weight: np.ndarray | None = None,
              prior: Sequence[float] | None = None) -> str:
    """Set the classifier's starting weights as ``init`` (``zeros``, ``probe`` or ``random``) says; how, in words.

    ``class_weight`` (one weight per class) weighs the probe's logistic regression as training is weighed.
    With ``prior`` (a logit-adjusted loss, which adds ``log(prior)`` to the logits), the probe's bias
    loses ``log(prior)``, so the loss starts where the probe's fit is.
    """
    if init == "zeros":
        zero_classifier(model)
        return "zero kernel and bias (uniform predictions)"
    if init == "probe":
        # The data's kind matches the decided head (`task_data_problem` refused any other).
        multi = bool(getattr(bundle, "multi_label", False))
        probe = init_head_from_probe(model, bundle.train_unaugmented, class_weight=class_weight, multi_label=multi)
        if multi:
            return (f"one logistic regression per label fitted on the pooled features of the {probe.images} training "
                    f"images (their exact-match ratio {probe.train_accuracy:.3f})")
        if prior is not None:
            bias = model.get_layer("predictions").bias
            bias.assign(np.asarray(bias.numpy(), np.float32) - np.log(np.asarray(prior, np.float32)))
        return (f"a logistic-regression probe fitted on the pooled features of the {probe.images} training images "
                f"(their accuracy {probe.train_accuracy:.3f})")
    return "Glorot-uniform kernel, zero bias"


def _precise_bn(session: _Session, model: keras.Model, phase: PhasePlan, bundle, state: dict | None,
                optimizer) -> dict | None:
    """Recompute the phase's trainable BatchNorm statistics from the un-augmented training images.

    With ``state`` (the phase's last checkpoint state), the checkpoint is saved again with them
    (and ``optimizer``). Returns what the pass did, for ``metrics.json``; None when none ran.
    """
    decision = phase.decisions.precise_bn
    if not decision.value:
        return None
    freeze_stages(model, phase.frozen)  # a resumed run skipped the phase's compile
    layers = trainable_batch_norms(model)
    if not layers:
        return None
    before = quiet_evaluate(model, bundle.val) if model.compiled else {}
    done = precise_bn(model, bundle.train_unaugmented, layers=layers,
                      steps=precise_bn_steps(bundle.num_train, session.plan.data.batch_size))
    after = quiet_evaluate(model, bundle.val) if model.compiled else {}
    change = (f"; val_accuracy {before['accuracy']:.4f} -> {after['accuracy']:.4f}"
              if "accuracy" in before and "accuracy" in after else "")
    session.say(f"Precise BN ({decision.reason}): moving statistics of {len(done.layers)} BatchNorm layers "
                f"recomputed from {done.images} training images ({done.batches} batches, no augmentation){change}.")
    if state is not None:
        checkpoint.save_checkpoint(model, session.folder.checkpoints, state, optimizer=optimizer)
    return {"layers": len(done.layers), "images": done.images,
            "val_accuracy_before": before.get("accuracy"), "val_accuracy_after": after.get("accuracy")}


_PHASE_REPORTS = "phase_reports.json"


def _read_phase_reports(session: _Session) -> dict[int, dict]:
    """The phase-end scores of a resumed run's finished phases (none for a new run)."""
    path = session.run.checkpoints / _PHASE_REPORTS
    if session.start.state is None or not path.is_file():
        return {}
    try:
        return {int(k): v for k, v in read_json(path).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _phase_end(session: _Session, model: keras.Model, phase: PhasePlan, bundle, class_names: list[str],
               best: dict, history: list[dict], precise: dict | None) -> tuple[dict, bool]:
    """Score the model as the phase left it (after precise BN); it is a candidate for the kept epoch too.

    Precise BN changes what an epoch's weights score, so after a pass the phase's end, with its
    statistics recomputed, competes with the epochs' own scores. Returns ``(best, whether the
    phase's end is it)``.
    """
    with session.dist.local(model) as local_model:  # multi_worker: predict() cannot gather spanning arrays
        report, _, _ = evaluate_model(local_model, bundle.val, class_names, task=session.plan.task)
    if report.get("task") == "multi_label":
        scores = {"val_map": report["map"], "val_exact_match": report["exact_match"], "val_loss": report["loss"]}
        phase_report = {"val_map": report["map"], "val_macro_f1": report["macro_f1"],
                        "val_micro_f1": report["micro_f1"], "per_label": report["per_label"]}
    else:
        scores = {"val_accuracy": report["accuracy"], "val_balanced_accuracy": report["balanced_accuracy"],
                  "val_loss": report["loss"]}
        phase_report = {"val_balanced_accuracy": report["balanced_accuracy"], "val_macro_f1": report["macro_f1"],
                        "per_class": report["per_class"]}
    session.phase_reports.setdefault(phase.index, {}).update(phase_report)
    write_json(session.folder.checkpoints / _PHASE_REPORTS, session.phase_reports)
    rows = [row for row in history if row["phase"] == phase.index]
    monitor = session.plan.decisions.checkpoint_monitor.value
    if not rows or precise is None or not better(scores.get(monitor), best.get(monitor), monitor):
        return best, False
    best = {"epoch": rows[-1]["epoch"], "phase": phase.index, "monitor": monitor, "after_precise_bn": True,
            **scores}
    checkpoint.save_best(model, session.folder.checkpoints)
    return best, True


def _record_phase(session: _Session, phase: PhasePlan, **facts: Any) -> None:
    """Keep what a phase did (precise BN, the feature cache) with its checkpoints, so that
    metrics.json still says it when a later phase is resumed in another process."""
    session.phase_reports.setdefault(phase.index, {}).update(facts)
    write_json(session.folder.checkpoints / _PHASE_REPORTS, session.phase_reports)


def _keep_best(session: _Session, model: keras.Model, bundle, history: list[dict], best: dict) -> None:
    """With ``checkpoint.keep: best``, load the best epoch's weights (then precise BN of its phase on them)."""
    if session.plan.checkpoint.keep != "best" or not history or not best.get("epoch"):
        return
    monitor = session.plan.decisions.checkpoint_monitor.value
    value = f"{monitor} {best.get(monitor, float('nan')):.4f}" + (
        " after precise BN" if best.get("after_precise_bn") else "")
    if best["epoch"] == history[-1]["epoch"]:
        session.say(f"Kept epoch {best['epoch']}, the last: best on {value}.")
        return
    checkpoint.restore_best(model, session.run.checkpoints)
    phase = session.plan.phases[int(best.get("phase", _phase_of(session.plan, best["epoch"])))]
    session.say(f"Kept epoch {best['epoch']} (phase '{phase.name}'), best on {value}, instead of the last, epoch "
                f"{history[-1]['epoch']}; checkpoint.keep: last keeps the last.")
    if not best.get("after_precise_bn"):
        _precise_bn(session, model, phase, bundle, None, None)


def _phase_of(plan: Plan, epoch: int) -> int:
    return next(p.index for p in plan.phases if p.start_epoch < epoch <= p.end_epoch)


def _fixed_size_batches(bundle, batch: int, say) -> None:
    # Keras splits each global batch across processes and needs its size fixed in the graph;
    # the last partial batch of an epoch is dropped (not from the final evaluation).
    bundle.train = bundle.train.rebatch(batch, drop_remainder=True)
    bundle.train_unaugmented = bundle.train_unaugmented.rebatch(batch, drop_remainder=True)
    if bundle.val is not None:
        bundle.val = bundle.val.rebatch(batch, drop_remainder=True)
    say(f"multi_worker: batches of exactly {batch}; up to {batch - 1} images per epoch and per "
        "validation pass are left out (not from the final evaluation).")


def _fit_phase(session: _Session, model: keras.Model, phase: PhasePlan, bundle, history: list[dict], best: dict,
               *, num_classes: int, jit_compile: bool) -> tuple[dict, Any, dict | None]:
    """Freeze, compile (restoring the optimizer mid-phase on resume) and fit one phase.

    Returns the best row, the fitted optimizer and what the feature cache held (None without one).
    """
    plan, start, say, decisions = session.plan, session.start, session.say, phase.decisions
    multipliers = dict(decisions.lr_multipliers.value)
    freeze_stages(model, phase.frozen)
    cache, cached = _feature_cache(session, model, phase, bundle)
    trainer = cache.split.suffix if cache else model
    with session.dist.scope():
        compile_phase(model, phase, frozen=phase.frozen, steps_per_epoch=plan.decisions.steps_per_epoch.value,
                      num_classes=num_classes, jit_compile=jit_compile, learning_rate=decisions.learning_rate.value,
                      lr_multipliers=multipliers, trainer=trainer, loss=plan.decisions.loss.value,
                      metrics=plan.decisions.metrics.value, prior=_prior_vector(plan))
        if start.state and phase.start_epoch < start.epochs_done:
            checkpoint.restore_optimizer(trainer, session.run.checkpoints, start.state)
    _print_stage_table(model, say, title=f"{phase.name}: frozen {list(phase.frozen) or 'nothing'}")
    first = max(phase.start_epoch, start.epochs_done)
    say(f"Phase {phase.index + 1}/{len(plan.phases)} '{phase.name}': epochs {first + 1}-{phase.end_epoch}, "
        f"{phase.optimizer.name} lr {phase.optimizer.learning_rate:g} ({phase.schedule.name}, "
        f"warmup {phase.schedule.warmup_epochs:g} epochs), weight decay {phase.weight_decay:g}, "
        f"label smoothing {phase.label_smoothing:g}"
        + (f", lr multipliers {multipliers}" if multipliers else "") + ".")
    say(describe_precision(model) + ".")
    folder = session.folder
    recorder = EpochRecorder(
        folder.checkpoints, history, {"phase": phase.index, "phase_name": phase.name}, bundle.num_train,
        on_epoch=folder.write_history, monitor=plan.decisions.checkpoint_monitor.value, best=best,
        saved=model if cache else None, end_epoch=phase.end_epoch,
        early_stopping=(phase.early_stopping.patience, phase.early_stopping.min_delta) if phase.early_stopping else None,
    )
    callbacks = [recorder, epoch_tensorboard(folder.logs), *session.callbacks]
    # First: the epoch's order, augmentation and dropout are set before anything else runs.
    callbacks.insert(0, EpochSeeds(plan.seed, counters=[bundle.epoch],
                                   owners=[bundle.augment.random_parts if bundle.augment is not None else None]))
    verbose = session.verbose
    if verbose == "auto" and not sys.stdout.isatty():
        # A log, not a terminal: one line per epoch (Keras' verbose=2 prints two), also in train.log.
        verbose = 0
        callbacks.append(EpochLine(plan.epochs, phase.name, write=say))
    try:
        with end_of_data_quiet():
            train_data, val_data = (cache.train, cache.val) if cache else (bundle.train, bundle.val)
            train_data = weigh_batches(train_data, _class_weight_vector(plan))
            trainer.fit(train_data, validation_data=val_data, epochs=phase.end_epoch, initial_epoch=first,
                        callbacks=callbacks, verbose=verbose, shuffle=False)  # tf.data shuffles itself
    except Exception as error:
        if session.dist.strategy != "multi_worker":
            raise
        # A lost peer surfaces as a failed collective (e.g. gloo's "Connection reset by peer").
        raise TrainingError(
            f"multi_worker training stopped on the {session.dist.worker}: {str(error).strip().splitlines()[-1]} "
            f"Every worker must stay up; the chief's run folder keeps the last complete epoch "
            f"({len(recorder.history)}). Start every worker again with the same command to resume.") from error
    if recorder.stopped_at is not None:
        stop = phase.early_stopping
        say(f"Early stopping: phase '{phase.name}' stopped after epoch {recorder.stopped_at} of {phase.end_epoch}: "
            f"{plan.decisions.checkpoint_monitor.value} did not improve by more than {stop.min_delta:g} for "
            f"{stop.patience} epochs.")
    if recorder.bad_loss is not None:
        bad = recorder.bad_loss
        kept = f"epoch {history[-1]['epoch']}" if history else "none (no epoch finished)"
        raise TrainingError(
            f"The training loss became {bad['loss']} in epoch {bad['epoch']} (phase '{phase.name}', batch "
            f"{bad['batch']}); training stopped. The last good checkpoint is kept: {kept}, in "
            f"{folder.checkpoints}. Lower phases[{phase.index}].optimizer.learning_rate (or add warmup, or "
            "use precision float32) and train again with --force, or with --out for a new folder.")
    return recorder.best, trainer.optimizer, cached


def _prior_vector(plan: Plan) -> list[float] | None:
    prior = plan.decisions.logit_adjustment.value
    return None if prior is None else list(prior.values())


def _class_weight_vector(plan: Plan) -> np.ndarray | None:
    weights = plan.decisions.class_weights.value
    return None if weights is None else np.array(list(weights.values()), np.float32)


def _feature_cache(session: _Session, model: keras.Model, phase: PhasePlan, bundle):
    """The frozen leading stages run once per image, where the plan decided so.

    Returns the ``FeatureCache`` the phase trains on and what it holds (``metrics.json``), or
    ``(None, None)`` to train on the images.
    """
    from restransfer.training.feature_cache import cache_features

    stage = phase.decisions.feature_cache.value
    if stage is None:
        return None, None
    data = session.plan.data
    with session.dist.scope():
        cache = cache_features(model, stage, bundle.train_unaugmented, bundle.val, batch_size=data.batch_size,
                               seed=session.plan.seed, shuffle_buffer=data.shuffle_buffer,
                               drop_small_last=True, epoch=bundle.epoch)
    session.say(cache.describe())
    return cache, {"after": cache.split.boundary, "shape": list(cache.split.feature_shape),
                   "images": cache.num_train, "seconds": round(cache.seconds, 2),
                   "mib": round(cache.nbytes / 2**20, 2)}


def _finish(session: _Session, model: keras.Model, bundle, evaluation_data, class_names: list[str],
            history: list[dict], best: dict, *, calibration_data=None) -> Run:
    """Evaluate on the whole validation set, write metrics, plots and ``model.keras``, then export.

    The temperature is fitted on ``calibration_data`` where the plan held images out for it, else
    on ``evaluation_data``.
    """
    from restransfer.diagnostics.interpret import write_evaluation_plots
    from restransfer.recipe.tta import describe_views, views_of

    plan, folder, say = session.plan, session.folder, session.say
    adjust_posthoc(model, plan.decisions.posthoc_adjustment, say)
    held_out = calibration_data is not None
    calibration = calibrate(model, calibration_data if held_out else evaluation_data, plan.calibration,
                            folder.plots, say, epoch_kept_on_data=plan.checkpoint.keep == "best" and not held_out,
                            fitted_on="held-out validation" if held_out else "validation")
    views = views_of(plan.tta)
    if views:
        say(f"Test-time augmentation (tta): {describe_views(views)}.")
    report, probabilities, labels = evaluate_model(model, evaluation_data, class_names, views, task=plan.task)
    _record_drops(session, bundle)
    multi = report.get("task") == "multi_label"
    if multi:
        # Chosen on the validation images by the evaluation above; predict, evaluate and the exports read them.
        write_json(folder.path / "thresholds.json", {
            "thresholds": report["thresholds"], "chosen_on": report["thresholds_from"],
            "images": report["num_images"], "split": "val", "tta": [view.name for view in views] if views else None})
    metrics = _metrics(plan, report, history, best, bundle, session.outcomes)
    if calibration is not None:
        metrics["calibration"] = calibration.as_dict()
    metrics["final"]["num_val"] = len(labels)  # what was evaluated, not what was listed
    kept = best.get("epoch") if plan.checkpoint.keep == "best" and best.get("epoch") else None
    metrics["final"]["epoch"] = kept or (history[-1]["epoch"] if history else 0)
    metrics["final"]["tta"] = [view.name for view in views] if views else None
    metrics["final"]["train_counts"] = bundle.counts.get("train")
    if bundle.test is not None:
        metrics["test"] = _test_report(model, bundle.test, class_names, views, report)
    for index, row in enumerate(metrics["phases"]):
        row.update(session.phase_reports.get(index, {}))
    decisions = plan.decisions
    metrics["class_weights"] = decisions.class_weights.value
    metrics["class_weights_reason"] = decisions.class_weights.reason
    metrics["logit_adjustment"] = decisions.logit_adjustment.value
    metrics["posthoc_adjustment"] = decisions.posthoc_adjustment.value
    metrics["checkpoint"] = {"monitor": decisions.checkpoint_monitor.value, "keep": plan.checkpoint.keep}
    write_json(folder.path / "metrics.json", metrics)
    plots.plot_history(history, folder.plots / "training_curves.png", title=f"{plan.model.name}: {folder.path.name}")
    write_evaluation_plots(report, probabilities, labels, class_names, dataset=evaluation_data, out_dir=folder.plots,
                           paths=bundle.paths.get("val"), title=f"validation: {headline(report)}")
    save_inference_model(model, folder.model_file)
    final = metrics["final"]
    scores = _scores(report, "val_") + (
        " (F1 at per-label thresholds chosen on these validation images, thresholds.json)" if multi else "")
    say(f"Finished: {scores}, val_loss {final['val_loss']:.4f} (epoch {final['epoch']}); {final['epochs']} epochs in "
        f"{final['seconds']:.1f} s ({final['images_per_s']:.0f} images/s).")
    if "test" in metrics:
        flatters = (f"; the validation scores are of the images epoch {final['epoch']} was kept on, so they flatter "
                    "the model" if kept else "")
        say(f"Test split ({metrics['test']['num_images']} images, used for nothing before this): "
            f"{_scores(metrics['test'])}{flatters}.")
    if session.dist.is_chief:
        from restransfer.recipe.report import report as run_report

        say(f"Report: {run_report(folder.path, plan=plan)} (top losses in {folder.plots / 'top_losses.png'}).")
    for fmt in plan.exports if session.dist.is_chief else ():
        from restransfer.export.artifact import made_from
        from restransfer.recipe.export_run import export_run

        target = folder.path / "export" / fmt
        if made_from(target, folder.model_file):  # made (and verified) for this very model.keras before a kill
            say(f"Export {fmt}: {target} was already written and verified for this model.keras; kept.")
            continue
        if os.path.lexists(target):
            # A late `export RUN`, or one of an earlier model.keras: it cannot be served as this model.
            say(f"Export {fmt}: {target} was not made from this model.keras; it is removed and rebuilt.")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        say(f"Export {fmt}: {export_run(folder.path, format=fmt, holding_lock=True)}")
    if session.tracker is not None:
        session.tracker.finish(metrics)
    # Last: a run killed while exporting is not finished, so the same command makes the exports.
    folder.write_info(status=FINISHED, error=None)
    return Run(model=model, history=history, metrics=metrics, run_dir=session.run.path, class_names=class_names,
               plan=plan)


def adjust_posthoc(model: keras.Model, decision, say=print) -> None:
    """Fold the post-hoc logit adjustment (`RunDecisions.posthoc_adjustment`) into the kept ``model``, if decided.

    Before calibration, so the temperature is fitted to the adjusted logits that are saved.
    """
    prior = decision.value
    if prior is None:
        return
    from restransfer.training.logit_adjustment import fold_prior

    fold_prior(model, list(prior.values()))
    shares = ", ".join(f"{label} {share:.3g}" for label, share in prior.items())
    say(f"Post-hoc logit adjustment ({decision.reason}): the kept model's logits lowered by log(prior), "
        f"prior {shares}; model.keras and every evaluation below predict with it.")


def calibrate(model: keras.Model, data, method: str, plots_dir: Path, say=print, *,
              epoch_kept_on_data: bool = False, fitted_on: str = "validation"):
    """Fit ``method``'s temperature on ``data`` (held-out images), fold it into ``model``, plot the reliability.

    Returns the ``Calibration`` (None for ``none``); ``plots_dir/reliability.png`` shows before and after.
    A temperature below 1 (sharpening) is fitted where the model looks under-confident on ``data``;
    when the kept epoch was also picked on ``data`` (``epoch_kept_on_data``) that is mostly the
    pick's luck, and held-out images rarely agree, so the log says so (the plan's
    ``calibration_holdout`` keeps the two apart where it can).
    """
    if method == "none":
        return None
    from restransfer.training.calibration import (
        fit_temperature,
        fold_temperature,
        logits_model,
        plot_reliability,
        softmax,
    )

    logits, labels = predict_dataset(logits_model(model), data)
    result = fit_temperature(logits, labels, fitted_on=fitted_on)
    fold_temperature(model, result.temperature)
    plot_reliability([softmax(logits), softmax(logits / result.temperature)], labels, plots_dir / "reliability.png",
                     names=("uncalibrated", f"temperature {result.temperature:.3f}"),
                     title=f"reliability on the {result.images} {fitted_on} images the temperature was fitted on")
    say(f"Calibration: {result.describe()}.")
    if result.temperature < 1:
        say(f"Warning: the temperature {result.temperature:.3f} is below 1: it makes the model more confident, "
            f"fitted on {result.images} {fitted_on} images" + (
                " that also picked the kept epoch, where the model looks better than on new images" if
                epoch_kept_on_data else "") + ". On new images this is rarely right; with few validation images "
            "prefer calibration: none, or fit on more held-out images (restransfer cv).")
    return result


def _record_drops(session: _Session, bundle) -> None:
    """Log and record images that failed to decode while training (changed after the check)."""
    dropped = {part: n for part, n in bundle.dropped_by_part().items() if n}
    if not dropped:
        return
    counts = ", ".join(f"{n} {part}" for part, n in dropped.items())
    session.say(f"Warning: images could not be read while training ({counts}): files that changed or broke "
                "after the data check were left out (the training counts are summed over epochs; metrics.json counts "
                "the validation images actually evaluated). Run `restransfer data check` on the data.")
    write_json(session.folder.path / "data_dropped.json", {
        "dropped": dropped, "note": "image reads that failed during training, summed over every pass "
                                    "(epochs, validation); the files passed the data check before training"})


def _scores(report: dict, prefix: str = "") -> str:
    """An evaluation report's main figures for the log, named as in metrics.json (``prefix``: ``val_``)."""
    if report.get("task") == "multi_label":
        average_precision = "n/a" if report["map"] is None else f"{report['map']:.4f}"
        return (f"{prefix}map {average_precision}, {prefix}macro_f1 {report['macro_f1']:.4f}, {prefix}micro_f1 "
                f"{report['micro_f1']:.4f}, {prefix}exact_match {report['exact_match']:.4f}")
    return (f"{prefix}accuracy {report['accuracy']:.4f}, {prefix}balanced_accuracy {report['balanced_accuracy']:.4f}, "
            f"{prefix}macro_f1 {report['macro_f1']:.4f}")


def _test_report(model: keras.Model, dataset, class_names: list[str], views, val_report: dict) -> dict:
    """The final model on the test split, scored as the validation images were.

    Nothing was chosen on these images: not the weights, the kept epoch, the temperature nor a
    multi-label run's thresholds (the validation images' are applied).
    """
    thresholds = val_report.get("thresholds")
    report, _, _ = evaluate_model(
        model, dataset, class_names, views, task=val_report.get("task", "single_label"),
        thresholds=None if thresholds is None else list(thresholds.values()),
        thresholds_from=None if thresholds is None else "chosen on the validation images (thresholds.json)")
    report["tta"] = [view.name for view in views] if views else None
    return report


def _metrics(plan: Plan, report: dict, history: list[dict], best: dict, bundle,
             outcomes: Mapping[int, PhaseOutcome]) -> dict:
    """``metrics.json``: one row per phase, the final evaluation, the best epoch, per-class scores.

    ``outcomes`` say per phase what precise BN did and what the feature cache held.
    """
    if report.get("task") == "multi_label":
        return _multi_label_metrics(plan, report, history, best, bundle, outcomes)
    final = {"val_accuracy": report["accuracy"], "val_balanced_accuracy": report["balanced_accuracy"],
             "val_macro_f1": report["macro_f1"], "val_loss": report["loss"], "val_ece": report["ece"],
             "epochs": len(history),
             **_timing(history, bundle.num_train), "num_train": bundle.num_train, "num_val": bundle.num_val}
    if "top5_accuracy" in report:
        final["val_top5_accuracy"] = report["top5_accuracy"]
    final["per_class"] = report["per_class"]
    return {"phases": _phase_rows(plan, history, bundle, outcomes, ("accuracy",)), "final": final, "best": best,
            "per_class": report["per_class"], "confusion_matrix": report["confusion_matrix"]}


def _multi_label_metrics(plan: Plan, report: dict, history: list[dict], best: dict, bundle,
                         outcomes: Mapping[int, PhaseOutcome]) -> dict:
    """A multi-label run's ``metrics.json``: per phase its mAP (Keras' per-epoch estimate), the final
    scikit-learn scores, per-label scores and the thresholds the F1 figures used."""
    final = {"val_map": report["map"], "val_macro_f1": report["macro_f1"], "val_micro_f1": report["micro_f1"],
             "val_exact_match": report["exact_match"], "val_loss": report["loss"], "epochs": len(history),
             **_timing(history, bundle.num_train), "num_train": bundle.num_train, "num_val": bundle.num_val,
             "per_label": report["per_label"], "thresholds": report["thresholds"],
             "thresholds_from": report["thresholds_from"]}
    return {"task": "multi_label", "phases": _phase_rows(plan, history, bundle, outcomes, ("map", "exact_match")),
            "final": final, "best": best, "per_label": report["per_label"]}


def _phase_rows(plan: Plan, history: list[dict], bundle, outcomes: Mapping[int, PhaseOutcome],
                scores: Sequence[str]) -> list[dict]:
    """Per phase: its last epoch's validation ``scores`` and loss, the best of the first score, what it did."""
    phases = []
    for phase in plan.phases:
        rows = [r for r in history if r["phase"] == phase.index]
        outcome = outcomes.get(phase.index, PhaseOutcome())
        phases.append({
            "name": phase.name, "epochs": len(rows),
            **{f"val_{score}": rows[-1].get(f"val_{score}") if rows else None for score in scores},
            "val_loss": rows[-1].get("val_loss") if rows else None,
            f"best_val_{scores[0]}": max((r.get(f"val_{scores[0]}", 0.0) for r in rows), default=None),
            "precise_bn": outcome.precise_bn, "feature_cache": outcome.feature_cache,
            **_timing(rows, bundle.num_train),
        })
    return phases


def save_inference_model(model: keras.Model, path: Path) -> None:
    """Save an uncompiled copy with every layer trainable (no optimizer, no frozen flags) atomically."""
    # From the config, not clone_model: a clone of a compiled model is compiled, and its saved
    # compile_config would name this phase's optimizer (and differ when a phase trained a
    # feature-cache suffix instead of the model).
    copy = keras.Model.from_config(model.get_config())
    for source, target in zip(model.layers, copy.layers):
        target.set_weights(source.get_weights())
    for layer in copy.layers:
        layer.trainable = True
    atomic_write(path, copy.save)


def _timing(rows: list[dict], num_train: int) -> dict:
    seconds = float(sum(r.get("seconds", 0.0) for r in rows))
    rates = [r["images_per_s"] for r in rows if r.get("images_per_s")]
    return {"seconds": round(seconds, 2), "images_per_s": round(float(np.mean(rates)), 1) if rates else 0.0}


def _print_stage_table(model, say, title: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    from restransfer.diagnostics.complexity import render_stage_table

    table = render_stage_table(model, show_trainable=True)
    table.caption = escape(title)  # holds the phase name, the user's text
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
