"""Per-stage parameter and multiply-add tables."""

from __future__ import annotations

from dataclasses import dataclass, replace

import keras
import numpy as np

from restransfer.errors import ConfigError
from restransfer.models.specs import BOTTLENECK, SPECS, ResNetSpec
from restransfer.models.stages import INPUT, model_stages


@dataclass
class StageRow:
    """One stage of a model: its output shape, parameters and multiply-adds per image."""

    stage: str
    output_shape: tuple
    params: int
    trainable_params: int
    macs: int
    trainable: bool


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one image through a convolution or dense layer (0 for the others)."""
    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, out_channels = layer.output.shape
        kh, kw, in_per_group, _ = layer.kernel.shape
        if h is None or w is None:
            return 0
        return int(h * w * out_channels * kh * kw * in_per_group)
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(layer.kernel.shape))
    return 0


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def stage_table(model: keras.Model) -> list[StageRow]:
    """Rows of ``conv1`` ... ``conv5`` and ``head``: output shape, parameters, multiply-adds.

    Multiply-adds need a fixed input size (build the model with a concrete ``input_shape``).

    Example:
        >>> rows = stage_table(create_model("resnet50"))
        >>> round(sum(r.macs for r in rows) / 1e9, 1)
        4.1
    """
    rows = []
    for stage, layers in model_stages(model).items():
        if stage == INPUT:
            continue
        weights = [w for layer in layers for w in layer.weights]
        trainable = [w for layer in layers for w in layer.trainable_weights]
        rows.append(StageRow(
            stage=stage,
            output_shape=tuple(layers[-1].output.shape[1:]),
            params=_count(weights),
            trainable_params=_count(trainable),
            macs=sum(layer_macs(layer) for layer in layers),
            trainable=bool(trainable) or not weights,
        ))
    return rows


def render_stage_table(model: keras.Model, *, show_trainable: bool = False):
    """A ``rich`` table of ``stage_table(model)`` with a total row."""
    from rich.table import Table

    rows = stage_table(model)
    table = Table(title=f"{model.name}: {model.count_params():,} parameters")
    for column in ("stage", "output", "params", "multiply-adds"):
        table.add_column(column, justify="left" if column in ("stage", "output") else "right")
    if show_trainable:
        table.add_column("status")
    for row in rows:
        cells = [row.stage, "x".join(str(d) for d in row.output_shape), f"{row.params:,}", _giga(row.macs)]
        if show_trainable:
            cells.append("trainable" if row.trainable else "frozen")
        table.add_row(*cells)
    total = ["total", "", f"{sum(r.params for r in rows):,}", _giga(sum(r.macs for r in rows))]
    table.add_row(*total, *([""] if show_trainable else []), style="bold")
    return table


def _giga(macs: int) -> str:
    return f"{macs / 1e9:.3f} G" if macs >= 1e7 else f"{macs / 1e6:.2f} M"


def grouped_spec(base: str | ResNetSpec, groups: int, width_per_group: int) -> ResNetSpec:
    """A bottleneck spec whose 3x3 convolutions have ``groups`` groups of ``width_per_group``.

    The ResNeXt template (Xie et al. 2017): at stage ``conv2`` the 3x3 convolution is
    ``groups * width_per_group`` channels wide, and the width per group doubles with each later
    stage as the stage widths do. ``groups=1, width_per_group=64`` is ResNet-50's block;
    ``width_per_group=1`` makes conv2's 3x3 depthwise (later stages: 2, 4, 8 channels per group).
    Build it with ``restransfer.models.resnet.build_resnet(spec, ...)``.

    Example:
        >>> spec = grouped_spec("resnet50", 32, 4)
        >>> spec == SPECS["resnext50_32x4d"]
        True
    """
    if isinstance(base, str):
        if base not in SPECS:
            raise ConfigError(f"Unknown model '{base}' for grouped_spec; give a name from list_models().")
        base = SPECS[base]
    if base.block != BOTTLENECK:
        raise ConfigError(
            f"grouped_spec needs a bottleneck network (resnet50, resnext..., or a bottleneck ResNetSpec); "
            f"received a '{base.block}' block network."
        )
    if groups < 1 or width_per_group < 1:
        raise ConfigError(
            f"groups and width_per_group must be positive. Received groups={groups}, "
            f"width_per_group={width_per_group}."
        )
    return replace(base, groups=int(groups), width_per_group=int(width_per_group))


def totals(model: keras.Model) -> tuple[int, int]:
    """``(trainable parameters, multiply-adds per image)``: the published counts for an unfrozen model."""
    rows = stage_table(model)
    return sum(r.trainable_params for r in rows), sum(r.macs for r in rows)
