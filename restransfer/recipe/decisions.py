"""Every ``auto`` of a recipe decided once, each with its reason: the run's decisions.

A decision is a :class:`Decision`, a value and the reason it was taken. ``decide`` takes them
all, in one place, from the Plan and whatever facts are known: the machine (an accelerator,
the memory budget), the data (:class:`DataFacts`: image counts, classes, batches per epoch)
and the built model. Without the data, a decision that needs it stays ``None``; ``resolve``
decides what the recipe alone allows (``restransfer validate --explain`` prints it), and
``train`` decides the rest before the first step (``train.log`` lists every decision). Training
reads the values; it decides nothing itself, so what ``--explain`` and ``train.log`` say is
what runs.

Adding a decision (class weights, the kept epoch, calibration, the task ...) takes three
small steps:

1. a field on :class:`RunDecisions` (one per run) or :class:`PhaseDecisions` (one per phase),
   typed ``Decision[T] | None = None`` with a comment saying what it decides;
2. a function ``_my_setting(plan, facts, ...) -> Decision[T] | None`` in this module (or in
   the module that implements the setting, called from here) that returns ``None`` while a fact
   it needs is unknown (``facts is None``), else ``Decision(value, "why")``;
3. one keyword in ``decide``'s ``RunDecisions(...)`` (or ``PhaseDecisions(...)``) call.

``explain`` lists it from then on (under the field's name), and the engine reads
``plan.decisions.my_setting.value`` (``plan.phases[i].decisions...`` per phase).

Example:
    >>> plan = load_plan("recipes/quickstart_target.yaml")
    >>> plan.decisions.lr_scale
    Decision(value=1.0, reason='distribution.lr_scaling none')
    >>> plan.decisions.head_init is None  # auto with a pretrained backbone needs the image count
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from restransfer.models.stages import HEAD
from restransfer.training.task import head_activation, loss_name, metric_names

if TYPE_CHECKING:
    import keras

    from restransfer.recipe.plan import PhasePlan, Plan

T = TypeVar("T")


@dataclass(frozen=True)
class Decision(Generic[T]):
    """A value the Plan decided and why (``reason`` reads after the value: ``on (auto: accelerator found)``)."""

    value: T
    reason: str

    def __str__(self) -> str:
        return f"{describe_value(self.value)} ({self.reason})"


def describe_value(value: Any) -> str:
    """A decision's value as a log line shows it: ``on``/``off`` for booleans, ``none`` for ``None``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {describe_value(v)}" for k, v in value.items()) + "}" if value else "{}"
    return str(value)


@dataclass(frozen=True)
class DataFacts:
    """What training learns from its data before the first step.

    Attributes:
        num_train: training images (as listed; a file that breaks later is dropped then).
        num_val: validation images.
        class_names: the classes, in output order.
        train_counts: training images per class, in ``class_names`` order (the data's balance).
        train_batches: batches per training epoch, ``0`` when the pipeline does not fix it.
        batch_size: images per batch.
        left_out: images left out of each shuffled epoch (a batch too small for BatchNorm).
    """

    num_train: int
    num_val: int
    class_names: tuple[str, ...]
    train_counts: tuple[int, ...] = ()
    train_batches: int = 0
    batch_size: int = 32
    left_out: int = 0

    @classmethod
    def of(cls, bundle, batch_size: int) -> DataFacts:
        """The facts of a ``DataBundle`` (``restransfer.data.load_data``) as it will train."""
        counts = (getattr(bundle.report, "counts", None) or {}).get("train") if getattr(bundle, "report", None) else None
        batches = int(getattr(bundle, "train_batches", 0) or 0)
        if not batches:
            cardinality = getattr(bundle.train, "cardinality", None)
            batches = max(int(cardinality()), 0) if cardinality is not None else 0
        return cls(num_train=int(bundle.num_train), num_val=int(bundle.num_val),
                   class_names=tuple(bundle.class_names), train_counts=tuple(int(c) for c in counts or ()),
                   train_batches=batches, batch_size=batch_size, left_out=int(getattr(bundle, "train_left_out", 0)))


@dataclass(frozen=True)
class PhaseDecisions:
    """What one phase does where the recipe says ``auto`` (or leaves a default to the run)."""

    # The base learning rate after the distribution's scaling rule.
    learning_rate: Decision[float] | None = None
    # Per-stage rate factors the optimizer applies, the head's included.
    lr_multipliers: Decision[Mapping[str, float]] | None = None
    # The stage after which the phase trains on cached features, or None to train on the images.
    feature_cache: Decision[str | None] | None = None
    # Whether precise BN recomputes the phase's trainable BatchNorm statistics after it.
    precise_bn: Decision[bool] | None = None


@dataclass(frozen=True)
class RunDecisions:
    """What the whole run does where the recipe says ``auto``."""

    # XLA compilation of the training step.
    jit_compile: Decision[bool] | None = None
    # The factor on every phase's learning rate (distribution.lr_scaling).
    lr_scale: Decision[float] | None = None
    # How the new head starts: zeros, random or probe.
    head_init: Decision[str] | None = None
    # The head's learning-rate factor where a phase sets none.
    head_lr_multiplier: Decision[float] | None = None
    # Precise BN for the run (each phase also needs BatchNorm layers that train).
    precise_bn: Decision[bool] | None = None
    # Optimizer steps per epoch: the schedules count in them.
    steps_per_epoch: Decision[int] | None = None
    # Class weights {label: weight} of the training loss, or None (every image weighs 1).
    class_weights: Decision[Mapping[str, float] | None] | None = None
    # The class prior {label: share of the training images} the loss adjusts the logits by, or None.
    logit_adjustment: Decision[Mapping[str, float] | None] | None = None
    # The class prior {label: share} whose log is taken off the kept model's logits after training, or None.
    posthoc_adjustment: Decision[Mapping[str, float] | None] | None = None
    # The validation metric that picks the kept epoch and stops phases early.
    checkpoint_monitor: Decision[str] | None = None
    # The share of each class's validation images that fit the temperature and do not choose the
    # kept epoch (0: the temperature, if any, is fitted on all of them).
    calibration_holdout: Decision[float] | None = None
    # The head's output activation: softmax (one class per image) or sigmoid (labels independent).
    head_activation: Decision[str] | None = None
    # The training loss (each phase's label smoothing applies to it).
    loss: Decision[str] | None = None
    # The metrics every epoch reports (Keras history names, before the val_ prefix).
    metrics: Decision[tuple[str, ...]] | None = None

    def complete(self) -> bool:
        return all(value is not None for value in _decisions(self).values())


def decide(plan: Plan, facts: DataFacts | None = None, *, model: keras.Model | None = None,
           accelerator: bool | None = None, memory_budget: float | None = None) -> Plan:
    """The Plan with every decision its facts allow taken; with ``facts`` and ``model``, every one.

    Args:
        plan: a resolved plan (``resolve``; its decisions are what the recipe alone allows).
        facts: the data's facts, or None before the data is read.
        model: the built model (the feature cache checks its frozen layers and sizes its features).
        accelerator: whether the machine has a GPU or TPU (XLA's ``auto``), None when not asked.
        memory_budget: bytes the feature cache may take (``auto``), None when not asked.
    """
    head = _head_init(plan, facts)
    head_lr = _head_lr_multiplier(plan, head)
    run = RunDecisions(
        jit_compile=_jit_compile(plan, accelerator),
        lr_scale=_lr_scale(plan),
        head_init=head,
        head_lr_multiplier=head_lr,
        precise_bn=_precise_bn(plan, facts),
        steps_per_epoch=_steps_per_epoch(facts),
        class_weights=(weights := _class_weights(plan, facts)),
        logit_adjustment=(adjustment := _logit_adjustment(plan, facts)),
        posthoc_adjustment=(posthoc := _logit_adjustment(plan, facts, posthoc=True)),
        checkpoint_monitor=_checkpoint_monitor(plan, weights, adjustment, posthoc),
        calibration_holdout=_calibration_holdout(plan),
        head_activation=Decision(*head_activation(plan.task)),
        loss=Decision(*loss_name(plan.task)),
        metrics=_metrics(plan, facts),
    )
    phases = tuple(dataclasses.replace(phase, decisions=PhaseDecisions(
        learning_rate=_learning_rate(phase, run.lr_scale),
        lr_multipliers=_lr_multipliers(phase, head_lr),
        feature_cache=_feature_cache(plan, phase, facts, model, memory_budget),
        precise_bn=_phase_precise_bn(phase, run.precise_bn),
    )) for phase in plan.phases)
    return dataclasses.replace(plan, decisions=run, phases=phases)


def explain(plan: Plan) -> list[str]:
    """One line per decision, ``name: value (reason)``; one that needs the data says so."""
    lines = [_line(name, decision) for name, decision in _decisions(plan.decisions).items()]
    for phase in plan.phases:
        lines.append(f"phase {phase.index + 1} '{phase.name}':")
        lines += ["  " + _line(name, decision) for name, decision in _decisions(phase.decisions).items()]
    return lines


def _line(name: str, decision: Decision | None) -> str:
    if decision is None:
        return f"{name}: decided from the data when training (train.log lists it)"
    return f"{name}: {decision}"


def _decisions(record) -> dict[str, Decision | None]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def _jit_compile(plan: Plan, accelerator: bool | None) -> Decision[bool] | None:
    from restransfer.training.precision import resolve_jit_compile

    setting = plan.recipe.jit_compile
    if setting != "auto":
        return Decision(*resolve_jit_compile(setting))
    if accelerator is None:
        return None
    return Decision(*resolve_jit_compile("auto", accelerator=accelerator))


def _calibration_holdout(plan: Plan) -> Decision[float]:
    if plan.calibration == "none":
        return Decision(0.0, "calibration none")
    chosen = [what for what, used in (("checkpoint.keep best", plan.checkpoint.keep == "best"),
                                      ("early stopping", any(p.early_stopping for p in plan.phases))) if used]
    if not chosen:
        return Decision(0.0, "checkpoint.keep last without early stopping: no epoch is chosen on the validation "
                             "images, so the temperature is fitted on all of them")
    if plan.data.source == "tfds":
        return Decision(0.0, "a TFDS source streams its validation images, which cannot be split: the temperature "
                             f"is fitted on the images that also chose the kept epoch ({', '.join(chosen)})")
    verb = "choose" if len(chosen) > 1 else "chooses"
    return Decision(0.5, f"{' and '.join(chosen)} {verb} an epoch on the validation images, where the model then "
                         "looks better than on new ones; half of each class's images (seeded) choose it, the other "
                         "half fit the temperature")


def _lr_scale(plan: Plan) -> Decision[float]:
    from restransfer.training.distribute import scaled_learning_rate

    distribution = plan.recipe.distribution
    scale = scaled_learning_rate(1.0, distribution.lr_scaling, plan.data.batch_size, distribution.base_batch_size)
    if distribution.lr_scaling == "none":
        return Decision(scale, "distribution.lr_scaling none")
    return Decision(scale, f"{distribution.lr_scaling} rule: batch {plan.data.batch_size} over base batch "
                           f"{distribution.base_batch_size}")


def _learning_rate(phase: PhasePlan, scale: Decision[float]) -> Decision[float]:
    rate = phase.optimizer.learning_rate
    if scale.value == 1.0:
        return Decision(float(rate), f"phases[{phase.index}].optimizer.learning_rate")
    return Decision(rate * scale.value, f"{rate:g} x{scale.value:g}, {scale.reason}")


def _head_init(plan: Plan, facts: DataFacts | None) -> Decision[str] | None:
    from restransfer.training.head_init import resolve_head_init

    init, why = resolve_head_init(plan.head.init, pretrained=plan.model.weights.kind != "none",
                                  head_only=plan.phases[0].head_only, hidden=plan.head.hidden,
                                  num_train=facts.num_train if facts is not None else None)
    return Decision(init, why) if init is not None else None


def _head_lr_multiplier(plan: Plan, init: Decision[str] | None) -> Decision[float] | None:
    from restransfer.training.head_init import HEAD_LR_MULTIPLIER, head_lr_multiplier

    if plan.head.lr_multiplier is not None:
        return Decision(float(plan.head.lr_multiplier), "head.lr_multiplier")
    if init is None:
        return None
    factor = head_lr_multiplier(init.value, None)
    if factor == HEAD_LR_MULTIPLIER:
        return Decision(factor, "a head that starts at zero must grow before it passes gradients on")
    return Decision(factor, f"the head starts {init.value}, as a new Keras layer trains")


def _lr_multipliers(phase: PhasePlan, head_lr: Decision[float] | None) -> Decision[Mapping[str, float]] | None:
    multipliers = dict(phase.lr_multipliers)
    if HEAD in phase.frozen or HEAD in multipliers:
        return Decision(multipliers, f"phases[{phase.index}].lr_multipliers" if multipliers else "none set")
    if head_lr is None:
        return None
    multipliers[HEAD] = head_lr.value
    return Decision(multipliers, f"head x{head_lr.value:g}: {head_lr.reason}")


def _precise_bn(plan: Plan, facts: DataFacts | None) -> Decision[bool] | None:
    from restransfer.training.precise_bn import precise_bn_enabled

    mode = plan.recipe.precise_bn
    if mode != "auto":
        return Decision(*precise_bn_enabled(mode, 0))
    if facts is None:
        return None
    return Decision(*precise_bn_enabled("auto", facts.num_train))


def _phase_precise_bn(phase: PhasePlan, run: Decision[bool] | None) -> Decision[bool] | None:
    if not phase.trains_batch_norm:
        return Decision(False, "no BatchNorm layer trains in this phase")
    return run


def _class_weights(plan: Plan, facts: DataFacts | None) -> Decision[Mapping[str, float] | None] | None:
    from restransfer.training.class_weights import decide_class_weights

    setting = plan.data.class_weight
    if setting == "none":
        return Decision(None, "data.class_weight: none")
    if plan.task == "multi_label":  # resolve refuses any other setting for multi_label
        return Decision(None, "task multi_label: per-label weights are not implemented, every image weighs 1")
    if facts is None or not facts.train_counts:
        return None
    decided = decide_class_weights(setting, facts.train_counts, facts.class_names)
    return Decision(decided.weights, decided.reason)


def _logit_adjustment(plan: Plan, facts: DataFacts | None, *,
                      posthoc: bool = False) -> Decision[Mapping[str, float] | None] | None:
    """The prior of the logit-adjusted loss, or (``posthoc``) of the adjustment after training."""
    from restransfer.training.class_weights import decide_class_weights

    setting = plan.data.class_weight
    if setting == "none" or isinstance(setting, Mapping) or setting == "balanced":
        return Decision(None, f"data.class_weight: {'given per label' if isinstance(setting, Mapping) else setting}")
    if plan.task == "multi_label":
        return Decision(None, "task multi_label: the logits are not adjusted")
    if facts is None or not facts.train_counts:
        return None
    decided = decide_class_weights(setting, facts.train_counts, facts.class_names)
    return Decision(decided.posthoc_prior if posthoc else decided.prior, decided.reason)


def _checkpoint_monitor(plan: Plan, *balancing: Decision | None) -> Decision[str] | None:
    from restransfer.training.best_epoch import checkpoint_monitor

    monitor = plan.checkpoint.monitor
    if monitor == "auto" and any(decision is None for decision in balancing):
        return None
    balanced = any(d is not None and d.value is not None for d in balancing)
    return Decision(*checkpoint_monitor(monitor, class_weighted=balanced, task=plan.task))


def _metrics(plan: Plan, facts: DataFacts | None) -> Decision[tuple[str, ...]] | None:
    task = plan.task
    if task == "single_label" and facts is None:
        return None  # top-5 accuracy needs the class count
    return Decision(*metric_names(task, len(facts.class_names) if facts is not None else None))


def _steps_per_epoch(facts: DataFacts | None) -> Decision[int] | None:
    if facts is None:
        return None
    if facts.train_batches:
        reason = f"{facts.num_train} training images in batches of {facts.batch_size}"
        if facts.left_out:
            reason += f", the last {facts.left_out} of each shuffled epoch left out"
        return Decision(facts.train_batches, reason)
    steps = max(1, math.ceil(facts.num_train / facts.batch_size))
    return Decision(steps, f"{facts.num_train} training images in batches of {facts.batch_size}")


def _feature_cache(plan: Plan, phase: PhasePlan, facts: DataFacts | None, model: keras.Model | None,
                   budget: float | None) -> Decision[str | None] | None:
    """The recipe decides ``off``; whether ``auto`` or ``true`` caches needs the built model (its frozen
    layers, the size of its features) and the data's image count."""
    from restransfer.training.feature_cache import cacheable_stages, recipe_blockers

    recipe = plan.recipe
    if recipe.feature_cache is False:
        return Decision(None, "feature_cache: false")
    cached = cacheable_stages(plan.model.stages, phase.frozen)
    if not cached:
        return Decision(None, "the phase freezes no leading stage")
    reasons = recipe_blockers(cached, augmented=recipe.data.root.augment.enabled,
                              multi_worker=recipe.distribution.strategy == "multi_worker",
                              drop_path_rate=recipe.model.drop_path_rate)
    if reasons:  # with feature_cache: true, resolve refused the recipe already
        return Decision(None, "; ".join(reasons))
    if model is None or facts is None:
        return None
    from restransfer.models.stages import freeze_stages
    from restransfer.training.feature_cache import cache_decision

    # The decision reads the phase's trainable flags: freeze as the phase will, then restore.
    trainable = [(layer, layer.trainable) for layer in model.layers]
    freeze_stages(model, phase.frozen)
    try:
        stage, why = cache_decision(model, phase.frozen, mode=recipe.feature_cache,
                                    num_images=facts.num_train + facts.num_val, budget_bytes=budget)
        return Decision(stage, why.removeprefix("off: ") if stage is None else why)
    finally:
        for layer, flag in trainable:
            layer.trainable = flag


def log_lines(plan: Plan) -> list[str]:
    """``explain``'s lines under a heading, as ``train.log`` starts."""
    return ["Decisions (each auto with its reason):", *("  " + line for line in explain(plan))]


__all__: Sequence[str] = ["DataFacts", "Decision", "PhaseDecisions", "RunDecisions", "decide", "explain"]
