"""Sweeps on Optuna: recipe keys searched by seeded TPE, scored on the monitored metric (mean over folds).

A space file names recipe key paths and their ranges or choices::

    phases[0].optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-2]}
    phases[0].weight_decay: {uniform: [0.0, 0.001]}
    phases[0].epochs: {int: [4, 12]}
    phases[0].freeze: {choice: [[conv1], [conv1, conv2], all_but_head]}

Every value the space can produce at its bounds (and every choice) is checked against the schema
and the Plan's rules before the first trial, so a typo or an impossible value stops the sweep at
once, named. Each trial is an ordinary run folder ``OUT/trial-N`` (a cv folder with ``folds``),
reported to Optuna after every epoch so that a median pruner stops hopeless trials. The study
lives in ``OUT/sweep.db`` (SQLite): rerunning the same command resumes it, and a trial that was
killed runs again with the same values, resuming its run folder from the last epoch. At the end,
``OUT/best.yaml`` is the best trial's resolved recipe and ``OUT/trials.csv`` the table of trials.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from restransfer.errors import ConfigError, TrainingError, did_you_mean
from restransfer.files import read_json, write_text
from restransfer.recipe.plan import Plan, load_plan

KINDS = ("log_uniform", "uniform", "int", "choice")
STUDY = "restransfer-sweep"


@dataclass(frozen=True)
class Dimension:
    """One searched recipe key: ``kind`` with ``low``/``high`` (ranges) or ``choices``."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The trial's value for this key (choices are suggested by their YAML text, readable in the study)."""
        if self.kind == "log_uniform":
            return trial.suggest_float(self.key, self.low, self.high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.key, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high)
        return yaml.safe_load(trial.suggest_categorical(self.key, [_text(c) for c in self.choices]))

    def probes(self) -> list:
        """Values that must all be valid recipe values: the bounds, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def _text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def parse_space(tree: Any, source: str = "the space") -> list[Dimension]:
    """``{key path: {kind: values}}`` -> dimensions; one ``ConfigError`` listing every fault."""
    from restransfer.recipe.load import parse_key_path
    from restransfer.validation import problems_error

    if not isinstance(tree, Mapping) or not tree:
        raise ConfigError(f"{source} must map recipe key paths to ranges, e.g. "
                          "'phases[0].optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-2]}'.")
    faults, dims = [], []
    for key, spec in tree.items():
        try:
            parse_key_path(str(key))
        except ConfigError as error:
            faults.append(f"{key}: {error}")
            continue
        if not isinstance(spec, Mapping) or len(spec) != 1:
            faults.append(f"{key}: must be one of {{{', '.join(f'{k}: ...' for k in KINDS)}}}; received {spec!r}.")
            continue
        (kind, values), = spec.items()
        if kind not in KINDS:
            faults.append(f"{key}: unknown kind '{kind}'; allowed: {', '.join(KINDS)}.{did_you_mean(str(kind), KINDS)}")
            continue
        if kind == "choice":
            if not isinstance(values, list) or not values:
                faults.append(f"{key}: choice takes a non-empty list of values; received {values!r}.")
            elif len({_text(v) for v in values}) != len(values):
                faults.append(f"{key}: choice lists a value twice: {values!r}.")
            else:
                dims.append(Dimension(str(key), kind, choices=tuple(values)))
            continue
        number = int if kind == "int" else (int, float)
        if (not isinstance(values, list) or len(values) != 2
                or not all(isinstance(v, number) and not isinstance(v, bool) for v in values)):
            what = "integers" if kind == "int" else "numbers"
            faults.append(f"{key}: {kind} takes [low, high], two {what}; received {values!r}.")
            continue
        low, high = values
        if not low < high or (kind == "log_uniform" and low <= 0):
            faults.append(f"{key}: {kind} needs low < high{' and low > 0' if kind == 'log_uniform' else ''}; "
                          f"received [{low}, {high}].")
            continue
        dims.append(Dimension(str(key), kind, low=low, high=high))
    if faults:
        raise problems_error(f"Sweep space {source}", faults)
    return dims


def read_space(path: str | Path) -> list[Dimension]:
    """A space YAML file (read with restransfer's bounded safe loader)."""
    from restransfer import yaml_io

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Sweep space file {path} does not exist (or is not a file).")
    return parse_space(yaml_io.read_yaml(path, what="Sweep space"), str(path))


def check_space(recipe: str | Path | Mapping[str, Any], base: Mapping[str, Any], dims: Sequence[Dimension]) -> None:
    """Resolve the recipe at every probe value of every dimension; one ``ConfigError`` naming each bad value."""
    from restransfer.validation import problems_error

    faults = []
    for dim in dims:
        for value in dim.probes():
            try:
                load_plan(recipe, {**base, dim.key: value})
            except ConfigError as error:
                faults.append(f"{dim.key} = {_text(value)}: {' '.join(str(error).split())}")
    if faults:
        raise problems_error("Sweep space values the recipe refuses", faults)


def sweep_objective(plan: Plan) -> tuple[str, str]:
    """The validation metric a sweep scores its trials on, and Optuna's direction for it.

    It is the metric the runs keep their epoch by (``checkpoint.monitor``). Where that says ``auto``
    it depends on the data (balanced accuracy once class weights apply); a study needs one metric for
    every trial before any data is read, so ``auto`` scores balanced accuracy unless
    ``data.class_weight`` is ``none``: on balanced data it equals accuracy, on imbalanced data it is
    what the kept epoch was chosen by.

    Example:
        >>> sweep_objective(load_plan("recipes/quickstart_source.yaml"))
        ('val_balanced_accuracy', 'maximize')
    """
    from restransfer.training.best_epoch import checkpoint_monitor, lower_is_better

    monitor, _ = checkpoint_monitor(plan.checkpoint.monitor, class_weighted=plan.data.class_weight != "none",
                                    task=plan.task)
    return monitor, "minimize" if lower_is_better(monitor) else "maximize"


def pruning_callback(trial, *, offset: int = 0, monitor: str = "val_accuracy"):
    """A Keras callback reporting ``monitor`` to ``trial`` after each epoch and raising ``TrialPruned``
    when the pruner says so (step = ``offset`` + the run's epoch index, so folds get steps of their own)."""
    import keras
    import optuna

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if value is None or not math.isfinite(float(value)):
                return
            trial.report(float(value), offset + epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: {monitor} {float(value):.4f}")

    return _Report()


@dataclass
class SweepResult:
    """What ``sweep`` wrote: the study, the best trial's values and files."""

    out: Path
    study: Any
    best_value: float | None
    best_params: dict
    best_recipe: Path | None
    trials_csv: Path


def sweep(recipe: str | Path | Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any] | None = None, *,
          space: str | Path | Mapping[str, Any], trials: int, folds: int | None = None, out: str | Path | None = None,
          seed: int | None = None, prune: bool = True, verbose: int | str = "auto",
          say: Callable[[str], None] | None = None) -> SweepResult:
    """Search ``space`` for ``trials`` trials in all (earlier trials of a resumed sweep count).

    Args:
        recipe: a YAML path or a mapping.
        overrides: fixed ``--set`` values applied before the space's.
        space: a space YAML file or its mapping (see the module doc).
        trials: how many finished trials (complete, pruned or failed by the recipe) the study ends with.
        folds: score each trial by ``folds``-fold cross-validation (the mean of the monitored metric).
        out: the sweep folder (default ``runs/<recipe name>-sweep``).
        seed: the TPE sampler's seed (default: the recipe's).
        prune: stop trials whose intermediate scores fall below the median (Optuna's MedianPruner).
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError("restransfer sweep needs Optuna: pip install 'restransfer[sweep]'.") from None
    from restransfer.files import FolderLock
    from restransfer.recipe.engine import train
    from restransfer.recipe.load import parse_overrides

    say = say or ((lambda line: None) if verbose == 0 else (lambda line: print(line, flush=True)))
    if isinstance(recipe, Plan):
        raise ConfigError("sweep takes a recipe file or mapping (the space changes its keys), not a resolved Plan.")
    if trials < 1 or (folds is not None and folds < 2):
        raise ConfigError(f"--trials must be at least 1 and --folds at least 2; received {trials} and {folds}.")
    dims = read_space(space) if not isinstance(space, Mapping) else parse_space(space)
    base = dict(parse_overrides(overrides))
    plan = load_plan(recipe, base)
    check_space(recipe, base, dims)
    objective_metric, direction = sweep_objective(plan)
    out = Path(out if out is not None else Path("runs") / f"{plan.name}-sweep").expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out / ".sweep.lock")
    if not lock.acquire():
        raise ConfigError(f"{out} is in use by {lock.describe_holder()}; wait for that sweep or choose another --out.")
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        identity = json.dumps({"recipe": plan.text, "space": [[d.key, d.kind, d.low, d.high, [_text(c) for c in d.choices]]
                                                              for d in dims], "folds": folds})
        study = optuna.create_study(
            study_name=STUDY, storage=f"sqlite:///{out / 'sweep.db'}", direction=direction, load_if_exists=True,
            sampler=seeded_sampler(base_seed := plan.recipe.seed if seed is None else seed, 0),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if prune
            else optuna.pruners.NopPruner())
        known = study.user_attrs.get("identity")
        if known is None:
            study.set_user_attr("identity", identity)
        elif known != identity:
            raise ConfigError(f"{out / 'sweep.db'} holds a sweep of another recipe, space or --folds; choose "
                              "another --out (or delete the folder to start over).")
        _requeue_killed(study, say)
        done = _finished_count(study)
        if done:
            say(f"Sweep: resuming {out} with {done} finished trial(s).")
        say(f"Sweep: {len(dims)} key(s), {trials} trials, objective {objective_metric}"
            + (f" (mean over {folds} folds)" if folds else "") + f"; study in {out / 'sweep.db'}.")

        def objective(trial) -> float:
            values = {d.key: d.suggest(trial) for d in dims}
            run = out / trial.user_attrs.get("run", f"trial-{trial.number}")
            trial.set_user_attr("run", run.name)
            say(f"Trial {trial.number}: " + ", ".join(f"{k}={_text(v)}" for k, v in values.items()))
            try:
                return _score(trial, run, {**base, **values})
            except optuna.TrialPruned as pruned:
                say(f"Trial {trial.number}: {pruned}.")
                raise

        def _score(trial, run: Path, values: Mapping[str, Any]) -> float:
            trial_plan = load_plan(recipe, values)
            if folds:
                from restransfer.recipe.cross_validation import cross_validate

                result = cross_validate(
                    trial_plan, folds=folds, out=run, verbose=verbose, say=say,
                    fold_callbacks=(lambda index, fold: [pruning_callback(
                        trial, offset=(index - 1) * fold.epochs, monitor=objective_metric)]) if prune else None)
                value = result.summary[objective_metric]["mean"]
            else:
                finished = _finished_run(run, trial_plan)
                metrics = finished if finished is not None else train(
                    trial_plan, out=run, verbose=verbose,
                    callbacks=[pruning_callback(trial, monitor=objective_metric)] if prune else ()).metrics
                value = metrics["final"][objective_metric]
            say(f"Trial {trial.number}: {objective_metric} {value:.4f}.")
            return float(value)

        optimize(study, objective, trials, base_seed, catch=(TrainingError,))
        return _finish(study, out, recipe, base, say)
    finally:
        lock.release()


def seeded_sampler(seed: int, finished: int):
    """The TPE sampler for the trial that starts after ``finished`` ended trials of a sweep seeded ``seed``."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed + finished)


def optimize(study, objective, trials: int, seed: int, *, catch: tuple = ()) -> None:
    """Run ``objective`` until ``trials`` trials have ended, reseeding the sampler before each.

    A sampler seeded once draws from one random stream that a killed sweep loses: the resumed
    process would start that stream again and suggest the first trials' values a second time.
    Seeded by the count of ended trials instead, trial ``n`` draws the same values whether the
    sweep ran through or was killed and resumed (TPE also sees the same ended trials then).
    """
    while (done := _finished_count(study)) < trials:
        study.sampler = seeded_sampler(seed, done)
        study.optimize(objective, n_trials=1, catch=catch)
        if _finished_count(study) == done:  # a trial that ended without a state we count: stop, not loop
            break


def _finished_run(run: Path, plan: Plan) -> dict | None:
    """The metrics of a finished run of ``plan`` in ``run`` (a trial killed after its run finished)."""
    from restransfer.runs import FINISHED, RunFolder

    folder = RunFolder(run)
    if folder.is_run() and (folder.info() or {}).get("status") == FINISHED and folder.recipe_text() == plan.text:
        return read_json(folder.path / "metrics.json")
    return None


def _states():
    from optuna.trial import TrialState

    return TrialState


def _finished_count(study) -> int:
    """Trials that ended (complete, pruned, or failed by the recipe: a NaN loss); not those a kill interrupted."""
    states = _states()
    return sum(t.state in (states.COMPLETE, states.PRUNED)
               or (t.state == states.FAIL and not t.user_attrs.get("interrupted"))
               for t in study.get_trials(deepcopy=False))


def _requeue_killed(study, say) -> None:
    """Trials left running by a killed sweep (we hold the folder's lock, so none is alive): marked failed
    and interrupted, their values queued again with their run folder, which resumes from its last epoch."""
    states = _states()
    for trial in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(trial._trial_id, states.FAIL)
        run = trial.user_attrs.get("run", f"trial-{trial.number}")
        study.enqueue_trial(trial.params, user_attrs={"run": run}, skip_if_exists=False)
        say(f"Sweep: trial {trial.number} was interrupted; its values run again in {run}.")


def _finish(study, out: Path, recipe, base: Mapping[str, Any], say) -> SweepResult:
    states = _states()
    all_trials = study.get_trials(deepcopy=False)
    keys = list(dict.fromkeys(k for t in all_trials for k in t.params))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", "value", *keys, "run", "seconds"])
    for t in all_trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else ""
        state = "interrupted" if t.user_attrs.get("interrupted") else t.state.name.lower()
        writer.writerow([t.number, state, "" if t.value is None else f"{t.value:.6g}", *[t.params.get(k, "") for k in keys],
                         t.user_attrs.get("run", ""), f"{seconds:.1f}" if seconds != "" else ""])
    trials_csv = out / "trials.csv"
    write_text(trials_csv, buffer.getvalue())
    complete = [t for t in all_trials if t.state == states.COMPLETE]
    say(_table(buffer.getvalue()))
    if not complete:
        say(f"Sweep: no trial completed; {trials_csv} lists them.")
        return SweepResult(out=out, study=study, best_value=None, best_params={}, best_recipe=None, trials_csv=trials_csv)
    best = study.best_trial
    values = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in best.params.items()}
    plan = load_plan(recipe, {**base, **values})
    best_recipe = out / "best.yaml"
    header = (f"# restransfer sweep: trial {best.number} of {len(all_trials)}, {best.value:.6g} "
              f"(run {best.user_attrs.get('run')}); searched: " + ", ".join(f"{k}={_text(v)}" for k, v in values.items()) + "\n")
    write_text(best_recipe, header + plan.text)
    say(f"Sweep: best trial {best.number}, value {best.value:.4f}; {best_recipe}, {trials_csv}.")
    return SweepResult(out=out, study=study, best_value=float(best.value), best_params=values, best_recipe=best_recipe,
                       trials_csv=trials_csv)


def _table(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


__all__ = ["Dimension", "KINDS", "SweepResult", "check_space", "optimize", "parse_space", "pruning_callback", "read_space",
           "seeded_sampler", "sweep"]
