"""The recipe, as strict pydantic models: unknown keys, wrong types and bad ranges fail.

Validation needs no model build and no TensorFlow: model names and stage names come from the
variant tables in ``restransfer.models.specs``. Validate with a base folder for relative
paths::

    Recipe.model_validate(yaml.safe_load(text), context={"base_dir": Path.cwd()})
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from restransfer.data.schema import DataConfig
from restransfer.errors import did_you_mean
from restransfer.models.specs import SPECS
from restransfer.training.optimizers import OPTIMIZERS
from restransfer.training.precision import PRECISIONS
from restransfer.training.schedules import DECAYS

FREEZE_KEYWORDS = ("none", "all_but_head", "all")
EXPORT_FORMATS = ("saved_model", "keras", "tflite")
HEAD = "head"
# keras.applications publishes ImageNet weights for these v1 ResNets only.
IMAGENET_MODELS = ("resnet50", "resnet101", "resnet152")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def model_stage_names(name: str) -> list[str]:
    """Freezable stages of a registered model, from its spec: ``conv1`` ... and ``head``."""
    return [*SPECS[name].stage_names, HEAD]


def _resolve(value: str, info: ValidationInfo) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir")
        path = (Path(base) if base is not None else Path.cwd()) / path
    return path.resolve()


class ModelConfig(_Strict):
    """The backbone: a registered name, builder options and where its weights come from.

    ``weights``: ``none`` (random), ``imagenet`` (keras.applications), a weights file
    (keras .h5, torchvision/timm .safetensors/.pth/.npz), or a previous run's folder. The
    classifier head is always new (see ``head``).
    """

    name: str
    weights: str | None = None
    style: Literal["torchvision", "keras"] | None = None
    norm: Literal["batch", "sync_batch", "group", "layer", "instance"] = "batch"
    norm_groups: int | None = Field(None, ge=1)
    output_stride: Literal[8, 16, 32] = 32
    zero_init_residual: bool = False
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    shortcut: Literal["A", "B"] | None = None
    bn_momentum: float | None = Field(
        None, gt=0, lt=1, description="BatchNorm moving-average momentum; Keras' 0.99 when unset. "
        "0.9 (PyTorch's 0.1) suits short runs of few steps")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in SPECS:
            raise ValueError(f"unknown model '{name}'.{did_you_mean(name, SPECS)} "
                             "See `restransfer models list` for all names")
        return name

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any, info: ValidationInfo) -> str | None:
        if value is None or value == "none":
            return None
        if not isinstance(value, (str, Path)):
            raise ValueError(f"must be none, imagenet, a weights file or a run folder; received {value!r}")
        if value == "imagenet":
            return "imagenet"
        path = _resolve(str(value), info)
        if not path.exists():
            raise ValueError(f"'{value}' does not exist: looked for {path}. Give none, imagenet, "
                             "a weights file (.h5, .safetensors, .pth, .npz) or a run folder")
        if path.is_dir():
            _check_run_folder(path, value, (info.data or {}).get("name"))
        return str(path)

    @model_validator(mode="after")
    def _weights_fit_model(self) -> ModelConfig:
        if self.weights == "imagenet":
            if self.name not in IMAGENET_MODELS:
                raise ValueError(f"model.weights: imagenet weights exist for {list(IMAGENET_MODELS)} "
                                 f"(keras.applications), not for '{self.name}'; give a weights file instead")
            if self.style == "torchvision":
                raise ValueError("model.style: imagenet weights are keras.applications weights and need "
                                 "style keras (or leave style out)")
        return self

    def builder_options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_model`` beyond name, weights and the head."""
        options = self.model_dump(exclude={"name", "weights", "bn_momentum"})
        return {k: v for k, v in options.items() if v is not None}


def _check_run_folder(path: Path, value: Any, model_name: str | None) -> None:
    import json

    if not (path / "run.json").exists():
        raise ValueError(f"'{value}' is a folder but not a restransfer run folder (no run.json in {path})")
    info = json.loads((path / "run.json").read_text(encoding="utf-8"))
    if not (path / "model.keras").exists():
        raise ValueError(f"run folder '{value}' has no model.keras (status: {info.get('status')}); "
                         "finish that run first (rerun its train command to resume it)")
    if model_name is not None and info.get("model") not in (None, model_name):
        raise ValueError(f"run folder '{value}' trained {info.get('model')}, but model.name is {model_name}; "
                         "weights load only into the same architecture")


class HeadConfig(_Strict):
    """The new classifier head: global average pooling, optional hidden layer, dropout."""

    dropout: float = Field(0.0, ge=0, lt=1)
    hidden: int | None = Field(None, ge=1)


class OptimizerConfig(_Strict):
    """``sgd``, ``adam``, ``adamw`` or ``rmsprop`` and its arguments."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adamw"
    learning_rate: float = Field(1e-3, gt=0, le=10)
    momentum: float | None = Field(None, ge=0, lt=1)
    nesterov: bool = False
    beta_1: float | None = Field(None, gt=0, lt=1)
    beta_2: float | None = Field(None, gt=0, lt=1)
    epsilon: float | None = Field(None, gt=0)
    clipnorm: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _options_fit(self) -> OptimizerConfig:
        allowed = {"sgd": {"momentum", "nesterov"}, "rmsprop": {"momentum"},
                   "adam": {"beta_1", "beta_2"}, "adamw": {"beta_1", "beta_2"}}[self.name]
        for key in ("momentum", "nesterov", "beta_1", "beta_2"):
            value = getattr(self, key)
            if key not in allowed and value not in (None, False):
                raise ValueError(f"{key} does not apply to optimizer {self.name}; it applies to "
                                 f"{'sgd/rmsprop' if key == 'momentum' else 'sgd' if key == 'nesterov' else 'adam/adamw'}")
        return self

    def keras_options(self) -> dict[str, Any]:
        options = self.model_dump(exclude={"name", "learning_rate"})
        if self.name == "sgd" and options["momentum"] is None:
            options["momentum"] = 0.9
        if self.name != "sgd":
            options.pop("nesterov")
        return {k: v for k, v in options.items() if v is not None}


class ScheduleConfig(_Strict):
    """Learning-rate schedule of one phase: linear warmup, then a decay (epochs may be fractions)."""

    name: Literal["constant", "cosine", "linear", "step"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    min_lr: float = Field(0.0, ge=0)
    milestones: list[float] = Field(default_factory=list, description="epochs of step decay")
    gamma: float = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _milestones_fit(self) -> ScheduleConfig:
        if self.milestones and self.name != "step":
            raise ValueError(f"milestones apply to the step schedule, not {self.name}")
        if self.milestones != sorted(self.milestones) or any(m <= 0 for m in self.milestones):
            raise ValueError(f"milestones must be positive and increasing; received {self.milestones}")
        return self


class PhaseConfig(_Strict):
    """One phase: what is frozen, how it is optimised, for how many epochs.

    ``freeze``: ``none``, ``all_but_head`` or a list of stages (``[conv1, conv2]``);
    ``freeze_until: conv3`` freezes every stage before conv3. Frozen BatchNorm layers run in
    inference mode. ``lr_multipliers`` scales the rate of trainable stages
    (discriminative fine-tuning), e.g. ``{conv3: 0.1, conv4: 0.3}``.
    """

    name: str | None = None
    epochs: int = Field(ge=1, le=10_000)
    freeze: str | list[str] | None = None
    freeze_until: str | None = None
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, lt=1)
    lr_multipliers: dict[str, float] = Field(default_factory=dict)

    @field_validator("freeze", mode="before")
    @classmethod
    def _freeze(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError(f"must be {' | '.join(FREEZE_KEYWORDS)} or a list of stage names "
                         f"such as [conv1, conv2]; received {value!r}")

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("lr_multipliers")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for stage, factor in value.items():
            if not 0 < factor <= 100:
                raise ValueError(f"{stage} must be in (0, 100] (freeze a stage "
                                 f"instead of a 0 rate); received {factor}")
        return value

    @model_validator(mode="after")
    def _one_freeze(self) -> PhaseConfig:
        if self.freeze is not None and self.freeze_until is not None:
            raise ValueError(f"give freeze or freeze_until, not both (received freeze={self.freeze}, "
                             f"freeze_until={self.freeze_until})")
        if self.freeze == "all":
            raise ValueError("freeze: all leaves nothing to train; use all_but_head to train only the head")
        return self

    def frozen_stages(self, stages: list[str]) -> list[str]:
        """The stages this phase freezes, given the model's stages (``conv1`` ... ``head``)."""
        if self.freeze_until is not None:
            return stages[: stages.index(self.freeze_until)]
        if self.freeze in (None, "none"):
            return []
        if self.freeze == "all_but_head":
            return [s for s in stages if s != HEAD]
        wanted = [self.freeze] if isinstance(self.freeze, str) else self.freeze
        return [s for s in stages if s in wanted]


class DistributionConfig(_Strict):
    """How many replicas train: ``tf.distribute`` on TensorFlow, ``keras.distribution`` on JAX.

    ``data.batch_size`` is the global batch, split evenly across replicas. ``lr_scaling:
    linear`` multiplies every phase's learning rate by ``batch_size / base_batch_size``.
    """

    strategy: Literal["none", "mirrored", "multi_worker", "tpu", "data_parallel"] = "none"
    lr_scaling: Literal["none", "linear"] = "none"
    base_batch_size: int = Field(256, ge=1)


class Recipe(_Strict):
    """A whole training run: model, head, data, phases, precision, XLA, seed and exports."""

    model: ModelConfig
    head: HeadConfig = Field(default_factory=HeadConfig)
    data: DataConfig
    phases: list[PhaseConfig] = Field(min_length=1, max_length=20)
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    jit_compile: Literal["auto"] | bool = "auto"
    seed: int = Field(0, ge=0, lt=2**31)
    export: list[Literal["saved_model", "keras", "tflite"]] = Field(default_factory=list)
    distribution: DistributionConfig = Field(default_factory=DistributionConfig)

    @field_validator("jit_compile", mode="before")
    @classmethod
    def _jit(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError(f"must be auto, true or false; received {value!r}")

    @model_validator(mode="after")
    def _stages_exist(self) -> Recipe:
        stages = model_stage_names(self.model.name)
        for i, phase in enumerate(self.phases):
            where = f"phases[{i}]"
            names = []
            if isinstance(phase.freeze, str) and phase.freeze not in FREEZE_KEYWORDS:
                names.append((f"{where}.freeze", phase.freeze, [*FREEZE_KEYWORDS, *stages]))
            elif isinstance(phase.freeze, list):
                names += [(f"{where}.freeze[{j}]", s, stages) for j, s in enumerate(phase.freeze)]
            if phase.freeze_until is not None:
                names.append((f"{where}.freeze_until", phase.freeze_until, stages))
            names += [(f"{where}.lr_multipliers.{s}", s, stages) for s in phase.lr_multipliers]
            for key, name, allowed in names:
                if name not in allowed:
                    raise ValueError(
                        f"{key}: '{name}' is not a stage of {self.model.name}; allowed: "
                        f"{', '.join(allowed)}.{did_you_mean(name, allowed)}")
            frozen = phase.frozen_stages(stages)
            if set(frozen) >= set(stages):
                raise ValueError(f"{where}.freeze: every stage is frozen, nothing would train")
            for stage in phase.lr_multipliers:
                if stage in frozen:
                    raise ValueError(f"{where}.lr_multipliers.{stage}: stage {stage} is frozen in "
                                     "this phase, so a learning-rate multiplier has no effect")
        if self.export:
            _check_export_available(self.export)
        return self

    def phase_name(self, index: int) -> str:
        return self.phases[index].name or f"phase{index + 1}"

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.data.image_size
        return int(height), int(width)


def _check_export_available(formats: list[str]) -> None:
    try:
        module = importlib.import_module("restransfer.export")
    except ImportError as error:
        module, reason = None, str(error)
    else:
        reason = "it has no export_run function"
    if module is None or not hasattr(module, "export_run"):
        raise ValueError(
            f"export: {formats} needs restransfer.export.export_run, which this installation lacks "
            f"({reason}); remove the export list and export the run folder later")


__all__ = [
    "DECAYS", "EXPORT_FORMATS", "FREEZE_KEYWORDS", "HeadConfig", "ModelConfig", "OPTIMIZERS",
    "OptimizerConfig", "PRECISIONS", "PhaseConfig", "Recipe", "ScheduleConfig", "model_stage_names",
]
