"""Resolve a Recipe into the Plan: everything knowable without reading an image, decided once.

``resolve`` runs every check that the recipe, the model table and the file system allow, with the
same helpers the builder, the weight loader, the optimizer and the distribution code call, and
reports all faults at once with their key paths (``restransfer validate`` exits 2). Every command
(train, validate, data check, evaluate, predict, export, quickstart) takes the resulting Plan; the
library below it takes plain keyword arguments, so notebooks need no YAML.

Example:
    >>> plan = load_plan("recipes/quickstart_source.yaml", ["phases[0].epochs=1"])
    >>> plan.phases[0].frozen, plan.model.weights.kind
    ((), 'none')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restransfer.errors import ConfigError, OptionError, WeightsError
from restransfer.models.blocks import BATCH_NORMS
from restransfer.models.stages import HEAD
from restransfer.models.weights.source import WeightsSource, weights_source
from restransfer.recipe.decisions import PhaseDecisions, RunDecisions, decide
from restransfer.recipe.schema import HeadConfig, OptimizerConfig, PhaseConfig, Recipe, ScheduleConfig
from restransfer.validation import problems_error


@dataclass(frozen=True)
class ModelPlan:
    """The backbone as ``create_model`` will build it.

    Attributes:
        name: the registry name.
        options: builder keyword arguments (``style``, ``norm``, ``input_shape`` ...), checked.
        weights: the typed weights source.
        stages: the freezable stages, ``("conv1", ..., "conv5", "head")``.
        bn_momentum: BatchNorm momentum to set after the build, or ``None`` for Keras' default.
    """

    name: str
    options: Mapping[str, Any]
    weights: WeightsSource
    stages: tuple[str, ...]
    bn_momentum: float | None = None


@dataclass(frozen=True)
class PhasePlan:
    """One phase, resolved: its name, its epochs in the whole run and the stages it freezes.

    ``lr_multipliers`` are the phase's per-stage rate factors, with ``head.lr_multiplier`` when
    the recipe sets it and the phase does not; ``decisions.lr_multipliers`` adds the head's
    default, which depends on how the head starts. ``trains_batch_norm`` says whether a
    BatchNorm layer trains in it (then precise BN may recompute its statistics afterwards).
    ``decisions`` holds what the phase does where the recipe says ``auto`` (see
    `restransfer.recipe.decisions`).
    """

    index: int
    name: str
    start_epoch: int
    frozen: tuple[str, ...]
    config: PhaseConfig = field(repr=False)
    lr_multipliers: Mapping[str, float] = field(default_factory=dict)
    trains_batch_norm: bool = False
    # Every stage but the head is frozen: the phase trains nothing but the new classifier.
    head_only: bool = False
    decisions: PhaseDecisions = field(default_factory=PhaseDecisions)

    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def end_epoch(self) -> int:
        return self.start_epoch + self.config.epochs

    @property
    def optimizer(self) -> OptimizerConfig:
        return self.config.optimizer

    @property
    def schedule(self) -> ScheduleConfig:
        return self.config.schedule

    @property
    def weight_decay(self) -> float:
        return self.config.weight_decay

    @property
    def label_smoothing(self) -> float:
        return self.config.label_smoothing

    @property
    def early_stopping(self):
        """``patience`` and ``min_delta`` of the phase's early stopping, or None (off)."""
        return self.config.early_stopping


@dataclass(frozen=True)
class Plan:
    """A resolved recipe: what every command runs.

    Attributes:
        recipe: the validated recipe (what the user wrote, with absolute paths).
        source: where it came from, for messages (a file path or ``(mapping)``).
        name: the default run-folder name (``runs/<name>``): the recipe file's stem.
        model: the backbone to build.
        phases: the phases in order.
        text: the resolved recipe as YAML, as stored in the run folder (``recipe.yaml``).
        decisions: what the run does where the recipe says ``auto``, each with its reason; after
            ``resolve`` those the recipe alone decides, after ``decide`` with the data's facts
            all of them (`restransfer.recipe.decisions`).
    """

    recipe: Recipe = field(repr=False)
    source: str
    name: str
    model: ModelPlan
    phases: tuple[PhasePlan, ...]
    text: str = field(repr=False)
    decisions: RunDecisions = field(default_factory=RunDecisions)

    @property
    def data(self):
        """The ``data:`` section's source model (``FolderData``, ``DigitsData`` ...)."""
        return self.recipe.data.root

    def data_options(self, **changes: Any) -> dict[str, Any]:
        """Keyword arguments of ``restransfer.data.load_data`` (plus ``seed``), with ``changes`` applied."""
        return {**self.recipe.data.model_dump(), "seed": self.recipe.seed, **changes}

    @property
    def image_size(self) -> tuple[int, int]:
        return self.recipe.image_size

    @property
    def task(self) -> str:
        """``single_label`` or ``multi_label`` (its consequences are in ``decisions``)."""
        return self.recipe.task

    @property
    def epochs(self) -> int:
        return self.phases[-1].end_epoch

    @property
    def seed(self) -> int:
        return self.recipe.seed

    @property
    def precision(self) -> str:
        return self.recipe.precision

    @property
    def head(self) -> HeadConfig:
        """The new head's ``dropout``, ``hidden`` units, ``init`` and ``lr_multiplier`` as written."""
        return self.recipe.head

    @property
    def strategy(self) -> str:
        """The distribution strategy (``none``, ``mirrored``, ``multi_worker`` ...)."""
        return self.recipe.distribution.strategy

    @property
    def calibration(self) -> str:
        return self.recipe.calibration

    @property
    def checkpoint(self):
        """Which epoch the run keeps (``keep``) and the ``monitor`` as written (``auto`` decided in ``decisions``)."""
        return self.recipe.checkpoint

    @property
    def tta(self):
        """The final evaluation's test-time augmentation (``flip``, ``crops``), or None."""
        return self.recipe.tta

    @property
    def exports(self) -> tuple[str, ...]:
        """The formats exported after training."""
        return tuple(self.recipe.export)


def resolve(recipe: Recipe, *, source: str = "(mapping)", name: str = "run", check_paths: bool = True) -> Plan:
    """Check everything a recipe implies and return its Plan; raise one ``ConfigError`` listing all faults.

    Args:
        recipe: a validated recipe (``load_recipe``).
        source: the recipe's file, named in messages.
        name: the default run-folder name.
        check_paths: check the weights source on disk (off for a finished run's recipe: its
            weights are in ``model.keras`` and may have moved since).
    """
    from restransfer.models.registry import check_model_name
    from restransfer.models.specs import SPECS
    from restransfer.recipe.load import dump_recipe

    faults: list[str] = []
    _check(faults, "model.name", lambda: check_model_name(recipe.model.name))
    model = _model_plan(recipe, faults, check_paths) if recipe.model.name in SPECS else None
    stages = model.stages if model is not None else ()
    phases = tuple(_phase_plans(recipe, stages, faults)) if stages else ()
    _check(faults, "data.", lambda: _check_data(recipe))
    _check(faults, "distribution.", lambda: _check_distribution(recipe))
    faults += _task_faults(recipe)
    if recipe.head.init == "probe" and recipe.head.hidden:
        faults.append("head.init: probe fits a linear classifier on the pooled features, so it needs a head without "
                      "a hidden layer; remove head.hidden or use head.init: zeros.")
    if faults:
        raise problems_error(f"Recipe {source}", faults)
    # Without data: the decisions the recipe alone allows (`decide` takes the rest when training).
    return decide(Plan(recipe=recipe, source=source, name=name, model=model, phases=phases,
                       text=dump_recipe(recipe)))


def _task_faults(recipe: Recipe) -> list[str]:
    """What ``task`` forbids elsewhere in the recipe: a source, a monitor, class weights, calibration."""
    from restransfer.training.best_epoch import monitor_problem
    from restransfer.training.task import task_source_problem

    faults = []
    data = recipe.data.root
    if problem := task_source_problem(recipe.task, data.source):
        faults.append(f"task: {problem}")
    if problem := monitor_problem(recipe.checkpoint.monitor, recipe.task):
        faults.append(f"checkpoint.monitor: {problem}")
    if recipe.task == "multi_label" and data.class_weight not in ("auto", "none"):
        # Per-label positive weights (binary cross-entropy's pos_weight) are not implemented: Keras'
        # BinaryCrossentropy has no such argument, and a sample weight cannot weigh one label of an image.
        faults.append(f"data.class_weight: a multi_label run does not weigh its labels yet (received "
                      f"{data.class_weight!r}); per-label positive weights are not implemented. Use none or auto "
                      "(auto is none for multi_label), and judge the rare labels by their per-label AP.")
    if recipe.task == "multi_label" and getattr(data, "fold", None) is not None:
        faults.append("data.fold: folds are stratified by one class per image, which a multi_label run's label sets "
                      "do not have; remove data.fold (cross-validation is not available for multi_label yet).")
    if recipe.task == "multi_label" and recipe.calibration != "none":
        # Temperature scaling fits one softmax temperature; per-label sigmoids would each need their own.
        faults.append(f"calibration: {recipe.calibration} fits a softmax temperature, which a multi_label run's "
                      "per-label sigmoids do not have; use calibration: none (the per-label thresholds chosen on "
                      "validation data set where each label is predicted).")
    return faults


def _check(faults: list[str], prefix: str, check: Callable[[], Any], keys: Mapping[str, str] | None = None):
    """Run ``check``; an ``OptionError`` becomes a fault at ``prefix + key`` (or ``keys[key]``)."""
    try:
        return check()
    except OptionError as error:
        where = (keys or {}).get(error.key, prefix + error.key)
        faults.append(f"{where}: {error}")
    except (ConfigError, WeightsError) as error:
        faults.append(f"{prefix.rstrip('.')}: {error}")
    return None


def _model_plan(recipe: Recipe, faults: list[str], check_paths: bool) -> ModelPlan | None:
    from restransfer.models.registry import default_style
    from restransfer.models.resnet import check_build_options
    from restransfer.models.specs import SPECS

    config = recipe.model
    spec = SPECS[config.name]
    options = config.model_dump(exclude={"name", "weights", "bn_momentum"}, exclude_none=True)
    options.update(style=config.style or default_style(config.weights, config.name), preprocessing="auto",
                   include_top=False, input_shape=(*recipe.image_size, 3))
    # A builder option's key is the recipe's model.<key>, except the input, which data: sets.
    _check(faults, "model.", lambda: check_build_options(spec, **options), {"input_shape": "data.image_size"})
    weights = _check(faults, "model.weights", lambda: weights_source(
        config.weights, model_name=config.name, style=options["style"])) if check_paths else None
    return ModelPlan(name=config.name, options=options, weights=weights or WeightsSource("none"),
                     stages=(*spec.stage_names, HEAD), bn_momentum=config.bn_momentum)


def _phase_plans(recipe: Recipe, stages: Sequence[str], faults: list[str]):
    from restransfer.models.stages import resolve_frozen
    from restransfer.training.optimizers import check_optimizer_options
    from restransfer.training.schedules import check_schedule

    start = 0
    for index, phase in enumerate(recipe.phases):
        where = f"phases[{index}]."
        frozen = _check(faults, where, lambda: resolve_frozen(stages, phase.freeze, phase.freeze_until))
        if frozen is not None and set(frozen) >= set(stages):
            faults.append(f"{where}freeze: every stage is frozen ({phase.freeze}), nothing would train; "
                          "use all_but_head to train only the head.")
        for stage in phase.lr_multipliers:
            factor = phase.lr_multipliers[stage]
            if stage not in stages:
                from restransfer.errors import did_you_mean

                faults.append(f"{where}lr_multipliers.{stage}: '{stage}' is not a stage of {recipe.model.name}; "
                              f"allowed: {', '.join(stages)}.{did_you_mean(stage, stages)}")
            elif frozen and stage in frozen:
                faults.append(f"{where}lr_multipliers.{stage}: stage {stage} is frozen in this phase, so a "
                              "learning-rate multiplier has no effect.")
            elif not 0 < factor <= 100:
                faults.append(f"{where}lr_multipliers.{stage}: must be in (0, 100] (freeze a stage instead of a "
                              f"0 rate); received {factor}.")
        optimizer = phase.optimizer
        _check(faults, where + "optimizer.", lambda: check_optimizer_options(
            optimizer.name, optimizer.model_dump(exclude={"name", "learning_rate"})))
        schedule = phase.schedule
        _check(faults, where + "schedule.", lambda: check_schedule(
            schedule.name, epochs=phase.epochs, warmup_epochs=schedule.warmup_epochs, milestones=schedule.milestones))
        multipliers = dict(phase.lr_multipliers)
        if recipe.head.lr_multiplier is not None and not (frozen and HEAD in frozen):
            multipliers.setdefault(HEAD, float(recipe.head.lr_multiplier))
        backbone, frozen_set = {s for s in stages if s != HEAD}, set(frozen or ())
        # Every backbone stage of a batch-normalised model has BatchNorm layers; the head has none.
        trains_bn = recipe.model.norm in BATCH_NORMS and not backbone <= frozen_set
        _check_feature_cache(recipe, stages, frozen or (), where, faults)
        yield PhasePlan(index=index, name=phase.name or f"phase{index + 1}", start_epoch=start,
                        frozen=tuple(frozen or ()), config=phase, lr_multipliers=multipliers,
                        trains_batch_norm=trains_bn, head_only=frozen_set == backbone)
        start += phase.epochs


def _check_data(recipe: Recipe) -> None:
    """What the data section implies without reading an image (the loaders run the same rules)."""
    data = recipe.data.root
    if data.fold is not None and data.source == "tfds":
        raise OptionError("fold", "cross-validation folds need a source whose images are listed (folder, csv, "
                                  "digits, glyphs, arrays); a TFDS dataset streams its images.")
    if data.source == "digits":
        from restransfer.data.sources import digits_split

        digits_split(data.classes, data.per_class, data.val_per_class)


def _check_feature_cache(recipe: Recipe, stages: Sequence[str], frozen: Sequence[str], where: str,
                         faults: list[str]) -> None:
    """``feature_cache: true`` with a cause in the recipe that rules the cache out is a fault."""
    from restransfer.training.feature_cache import cacheable_stages, not_cacheable, recipe_blockers

    cached = cacheable_stages(stages, frozen)
    if recipe.feature_cache is not True or not cached:
        return
    reasons = recipe_blockers(cached, augmented=recipe.data.root.augment.enabled,
                              multi_worker=recipe.distribution.strategy == "multi_worker",
                              drop_path_rate=recipe.model.drop_path_rate)
    if reasons:
        faults.append(not_cacheable(f"{where}freeze ({', '.join(cached)})", reasons))


def _check_distribution(recipe: Recipe) -> None:
    from restransfer.training.distribute import check_strategy

    check_strategy(recipe.distribution.strategy)


def load_plan(recipe: str | Path | Mapping[str, Any] | Recipe,
              overrides: Sequence[str] | Mapping[str, Any] | None = None) -> Plan:
    """Read (a file or a mapping), override, validate and resolve a recipe: the one way in.

    Args:
        recipe: a YAML file, a parsed mapping, or a ``Recipe``.
        overrides: ``["phases[0].epochs=3"]`` or ``{"phases[0].epochs": 3}`` (not with a ``Recipe``).
    """
    from restransfer.recipe.load import load_recipe

    if isinstance(recipe, Recipe):
        if overrides:
            raise ConfigError("overrides apply to a recipe file or mapping, not to a validated Recipe.")
        return resolve(recipe)
    if isinstance(recipe, Mapping):
        return resolve(load_recipe(recipe, overrides))
    return resolve(load_recipe(recipe, overrides), source=str(recipe), name=Path(recipe).stem)


def run_plan(folder) -> Plan:
    """The Plan a finished (or unfinished) run folder ran, from its ``recipe.yaml``.

    Paths are not checked: the run's data or weights may have moved since it trained, and
    commands that need the data (``evaluate`` without ``--data``) say so when they read it.
    """
    from restransfer.recipe.load import load_recipe

    if folder.recipe_text() is None:
        raise ConfigError(f"{folder.path} has no recipe.yaml; is it a restransfer run folder?")
    recipe = load_recipe(folder.recipe_file, check_paths=False)
    return resolve(recipe, source=str(folder.recipe_file), name=folder.path.name, check_paths=False)
