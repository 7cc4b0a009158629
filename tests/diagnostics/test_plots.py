"""Plots draw one artist per input series and save a PNG that reloads."""

import numpy as np
import pytest
from PIL import Image

import restransfer as rt
from restransfer.diagnostics.complexity import stage_table
from restransfer.diagnostics.normalization import NormResult
from restransfer.diagnostics.plots import (
    plot_gradient_flow,
    plot_norm_comparison,
    plot_probe,
    plot_stage_bars,
    plot_tradeoff,
)
from restransfer.diagnostics.probe import ProbeRow


def png_is_drawn(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("L")).std() > 10


def test_gradient_flow_lines_align_models_of_different_depth(tmp_path):
    flow = {"short": {"conv1": 1.0, "head": 2.0}, "long": {"conv1": 3.0, "conv2": 2.0, "head": 1.0}}
    fig = plot_gradient_flow(flow, path=tmp_path / "flow.png")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_xdata(), [0.0, 0.5, 1.0])
    assert png_is_drawn(tmp_path / "flow.png")


def test_stage_bars_have_one_bar_per_model_and_stage(tmp_path):
    tables = {"20": stage_table(rt.create_model("cifar_resnet20")),
              "plain 20": stage_table(rt.create_model("plain_cifar_resnet20"))}
    fig = plot_stage_bars(tables, path=tmp_path / "bars.png")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert len(heights) == 2 * 5
    assert sum(heights[:5]) * 1e6 == pytest.approx(sum(r.trainable_params for r in tables["20"]))
    assert png_is_drawn(tmp_path / "bars.png")


def test_norm_probe_and_tradeoff_plots(tmp_path):
    results = [NormResult(n, b, 0.5, 1.0, 0.1, 10) for n in ("batch", "group") for b in (2, 8, 32)]
    assert len(plot_norm_comparison(results).axes[0].get_lines()) == 2
    probes = {"random": [ProbeRow("conv1", 16, 0.5, 0.1), ProbeRow("conv2", 16, 0.6, 0.1)]}
    fig = plot_probe(probes, path=tmp_path / "probe.png")
    assert len(fig.axes[0].containers) == 1 and png_is_drawn(tmp_path / "probe.png")
    fig = plot_tradeoff({"a": (1.0, 2.0), "b": (2.0, 3.0)}, xlabel="params", ylabel="acc")
    assert len(fig.axes[0].collections) == 2
