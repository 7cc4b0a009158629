"""The recipe, as strict pydantic models: unknown keys, wrong types and bad ranges fail.

This is what the user wrote, checked key by key; ``restransfer.recipe.plan.resolve`` turns it into
the Plan (stage names, frozen stages, builder options, the typed weights source). Every choice
here is a tuple declared by the module that implements it, so the schema cannot drift from the
code that runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
)

from restransfer.data.schema import DataConfig
from restransfer.data.tta import MAX_CROPS
from restransfer.export.formats import FORMATS
from restransfer.models.blocks import NORMS, STYLES
from restransfer.models.resnet import OUTPUT_STRIDES, SHORTCUTS
from restransfer.training.best_epoch import KEEPS, MONITORS
from restransfer.training.calibration import CALIBRATIONS
from restransfer.training.distribute import LR_SCALING, STRATEGIES
from restransfer.training.head_init import HEAD_INITS
from restransfer.training.optimizers import OPTIMIZERS
from restransfer.training.precision import PRECISIONS
from restransfer.training.schedules import DECAYS
from restransfer.training.task import TASKS

# Numbers in a recipe: YAML ints are accepted where floats are, but a string or a bool never is.
Number = StrictFloat | StrictInt


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The backbone: a registered name, builder options and where its weights come from.

    ``weights``: ``none`` (random), ``imagenet`` (keras.applications), a weights file
    (keras .h5, torchvision/timm .safetensors/.pth/.npz), or a previous run's folder. The
    classifier head is always new (see ``head``).
    """

    name: str
    weights: str | None = None
    style: Literal[tuple(STYLES)] | None = None
    norm: Literal[NORMS] = "batch"
    # Ranges of builder options are the builder's own checks (resnet.check_build_options).
    norm_groups: StrictInt | None = None
    output_stride: Literal[OUTPUT_STRIDES] = 32
    zero_init_residual: StrictBool = False
    drop_path_rate: Number = 0.0
    shortcut: Literal[tuple(s for s in SHORTCUTS if s)] | None = None
    bn_momentum: Number | None = Field(
        None, gt=0, lt=1, description="BatchNorm moving-average momentum; Keras' 0.99 when unset. "
        "0.9 (PyTorch's 0.1) suits short runs of few steps")

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any, info: ValidationInfo) -> Any:
        # A path is made absolute against the recipe's one base; whether it loads, resolve() checks.
        if value is None or value in ("none", "imagenet"):
            return None if value == "none" else value
        if not isinstance(value, str) or not value:
            raise ValueError(f"must be none, imagenet, a weights file or a run folder; received {value!r}")
        path = Path(value).expanduser()
        base = (info.context or {}).get("base_dir")
        return str(path if path.is_absolute() or base is None else Path(base) / path)


class HeadConfig(_Strict):
    """The new classifier head: global average pooling, optional hidden layer, dropout.

    ``init``: how the classifier starts (``auto``, ``zeros``, ``random`` or ``probe``: see
    `restransfer.training.head_init`). ``lr_multiplier``: the head's learning rate over each
    phase's (a phase's ``lr_multipliers.head`` overrides it); unset, 10 for a head that starts at
    zero and 1 for one that starts at random or from the probe (`head_lr_multiplier`).
    """

    dropout: Number = Field(0.0, ge=0, lt=1)
    hidden: StrictInt | None = Field(None, ge=1, le=65536)
    init: Literal[HEAD_INITS] = "auto"
    lr_multiplier: Number | None = Field(None, gt=0, le=100)


class OptimizerConfig(_Strict):
    """``sgd``, ``adam``, ``adamw`` or ``rmsprop`` and its arguments."""

    name: Literal[OPTIMIZERS] = "adamw"
    learning_rate: Number = Field(1e-3, gt=0, le=10)
    momentum: Number | None = Field(None, ge=0, lt=1)
    nesterov: StrictBool = False
    beta_1: Number | None = Field(None, gt=0, lt=1)
    beta_2: Number | None = Field(None, gt=0, lt=1)
    epsilon: Number | None = Field(None, gt=0)
    clipnorm: Number | None = Field(None, gt=0)

    def keras_options(self) -> dict[str, Any]:
        """The Keras optimizer's own arguments (SGD gets momentum 0.9 unless set)."""
        options = self.model_dump(exclude={"name", "learning_rate"})
        if self.name == "sgd" and options["momentum"] is None:
            options["momentum"] = 0.9
        if self.name != "sgd":
            options.pop("nesterov")
        return {k: v for k, v in options.items() if v is not None}


class ScheduleConfig(_Strict):
    """Learning-rate schedule of one phase: linear warmup, then a decay (epochs may be fractions)."""

    name: Literal[DECAYS] = "cosine"
    warmup_epochs: Number = Field(0.0, ge=0)
    min_lr: Number = Field(0.0, ge=0)
    milestones: list[Number] = Field(default_factory=list, max_length=100, description="epochs of step decay")
    gamma: Number = Field(0.1, gt=0, le=1)


class EarlyStoppingConfig(_Strict):
    """Stop a phase when the run's checkpoint monitor has not improved by more than ``min_delta``
    for ``patience`` epochs of that phase (counted from its epochs in ``history``, so a resumed
    run counts on)."""

    patience: StrictInt = Field(ge=1, le=10_000)
    min_delta: Number = Field(0.0, ge=0)


class PhaseConfig(_Strict):
    """One phase: what is frozen, how it is optimised, for how many epochs.

    ``freeze``: ``none``, ``all_but_head`` or a list of stages (``[conv1, conv2]``);
    ``freeze_until: conv3`` freezes every stage before conv3. Frozen BatchNorm layers run in
    inference mode. ``lr_multipliers`` scales the rate of trainable stages
    (discriminative fine-tuning), e.g. ``{conv3: 0.1, conv4: 0.3}``.
    """

    name: str | None = Field(None, max_length=200)
    epochs: StrictInt = Field(ge=1, le=10_000)
    freeze: str | list[str] | None = None
    freeze_until: str | None = None
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    label_smoothing: Number = Field(0.0, ge=0, lt=1)
    weight_decay: Number = Field(0.0, ge=0, lt=1)
    lr_multipliers: dict[str, Number] = Field(default_factory=dict)
    early_stopping: EarlyStoppingConfig | None = None

    @field_validator("schedule", "optimizer", mode="before")
    @classmethod
    def _name_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class DistributionConfig(_Strict):
    """How many replicas train: ``tf.distribute`` on TensorFlow, ``keras.distribution`` on JAX.

    ``data.batch_size`` is the global batch, split evenly across replicas. ``lr_scaling:
    linear`` multiplies every phase's learning rate by ``batch_size / base_batch_size``.
    """

    strategy: Literal[STRATEGIES] = "none"
    lr_scaling: Literal[LR_SCALING] = "none"
    base_batch_size: StrictInt = Field(256, ge=1, le=1 << 20)


class MlflowConfig(_Strict):
    """An MLflow tracking store (``sqlite:///mlflow.db``, a server URL; unset: MLflow's default,
    ``MLFLOW_TRACKING_URI``) and the experiment the runs go to (`restransfer.recipe.tracking`)."""

    uri: str | None = Field(None, min_length=1, max_length=2000)
    experiment: str = Field("restransfer", min_length=1, max_length=500)
    artifacts: str | None = Field(None, min_length=1, max_length=2000,
                                  description="artifact folder of a new experiment (default: beside an sqlite database)")


class TrackingConfig(_Strict):
    """Where a run is tracked besides its run folder (TensorBoard logs are always written)."""

    mlflow: MlflowConfig | None = None
class CheckpointConfig(_Strict):
    """Which epoch the run keeps: ``keep: best`` (the epoch with the best ``monitor``; ``model.keras``,
    the final metrics, the report and the exports come from it) or ``last``. ``monitor: auto`` is
    ``val_balanced_accuracy`` when class weights apply, else ``val_accuracy``; ``val_map`` for a
    multi-label task (`checkpoint_monitor`)."""

    monitor: Literal[MONITORS] = "auto"
    keep: Literal[KEEPS] = "best"


class TtaConfig(_Strict):
    """Test-time augmentation of the final evaluation: the mean over a horizontal flip (``flip``)
    and up to five crops (``crops``: centre, then corners) of each validation image."""

    flip: StrictBool = True
    crops: StrictInt = Field(0, ge=0, le=MAX_CROPS)


class Recipe(_Strict):
    """A whole training run: model, head, data, phases, precision, XLA, seed and exports."""

    task: Literal[TASKS] = Field(
        "single_label", description="single_label: one class per image (softmax); multi_label: any set of labels "
        "per image (sigmoids, binary cross-entropy; data from a csv `labels` column or an arrays 0/1 matrix)")
    model: ModelConfig
    head: HeadConfig = Field(default_factory=HeadConfig)
    data: DataConfig
    phases: list[PhaseConfig] = Field(min_length=1, max_length=20)
    precision: Literal[PRECISIONS] = "float32"
    jit_compile: Literal["auto"] | StrictBool = "auto"
    precise_bn: Literal["auto"] | StrictBool = Field(
        "auto", description="recompute trainable BatchNorm statistics after each phase (auto: small training sets)")
    # auto: a phase that trains only layers after frozen stages runs those once per image.
    feature_cache: Literal["auto"] | StrictBool = "auto"
    seed: StrictInt = Field(0, ge=0, lt=2**31)
    calibration: Literal[CALIBRATIONS] = Field(
        "none", description="temperature: fit one temperature on validation predictions (minimum NLL) and "
        "fold it into the classifier, so every output and export is calibrated; the argmax never changes. "
        "Where an epoch is chosen on the validation images (checkpoint.keep best, early stopping), half of "
        "each class's images choose it and the other half fit the temperature (calibration_holdout)")
    export: list[Literal[FORMATS]] = Field(default_factory=list, max_length=len(FORMATS))
    distribution: DistributionConfig = Field(default_factory=DistributionConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    tta: TtaConfig | None = None

    @field_validator("tta", mode="before")
    @classmethod
    def _tta_shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_validator("jit_compile", "precise_bn", "feature_cache", mode="before")
    @classmethod
    def _auto_or_bool(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError(f"must be auto, true or false; received {value!r}")

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.data.image_size
        return int(height), int(width)


__all__ = ["CheckpointConfig", "DistributionConfig", "EarlyStoppingConfig", "HeadConfig", "MlflowConfig",
           "ModelConfig", "OptimizerConfig", "PhaseConfig", "Recipe", "ScheduleConfig", "TrackingConfig", "TtaConfig"]
