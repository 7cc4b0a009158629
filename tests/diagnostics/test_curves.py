"""Training curves: histories from every source, one line per run and metric, a real PNG."""

import csv

import numpy as np
import pytest
from PIL import Image

from restransfer.diagnostics.curves import load_history, plot_curves
from restransfer.errors import ConfigError, DataError


def write_history(folder, losses, accuracies):
    folder.mkdir(parents=True)
    with (folder / "history.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "phase", "loss", "val_accuracy"])
        for i, (loss, acc) in enumerate(zip(losses, accuracies)):
            writer.writerow([i, "head" if i < 2 else "all", loss, acc])
    return folder


def test_reads_run_folders_dicts_and_histories(tmp_path):
    run = write_history(tmp_path / "run", [2.0, 1.5, 1.0], [0.3, 0.5, 0.7])
    assert load_history(run) == {"loss": [2.0, 1.5, 1.0], "val_accuracy": [0.3, 0.5, 0.7]}
    assert load_history(run / "history.csv") == load_history(run)

    class FakeHistory:  # the shape of keras.callbacks.History
        history = {"loss": [1, 0.5]}

    class FakeRun:  # the shape of restransfer.train's Run before it has a history in memory
        history = None
        run_dir = run

    assert load_history(FakeHistory()) == {"loss": [1.0, 0.5]}
    assert load_history(FakeRun())["loss"] == [2.0, 1.5, 1.0]


def test_plot_has_one_line_per_run_and_metric_and_writes_a_png(tmp_path):
    runs = {
        "a": write_history(tmp_path / "a", [2.0, 1.0], [0.4, 0.6]),
        "b": {"loss": [3.0, 2.0, 1.0], "val_accuracy": [0.1, 0.2, 0.9]},
        "c": {"loss": [1.0], "val_accuracy": [0.5]},
    }
    fig = plot_curves(runs, metrics=("loss", "val_accuracy"), path=tmp_path / "out" / "curves.png")
    assert [len(ax.get_lines()) for ax in fig.axes] == [3, 3]
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "val_accuracy"]
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), [3.0, 2.0, 1.0])
    with Image.open(tmp_path / "out" / "curves.png") as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] > 100 and pixels.std() > 10  # drawn, not blank


def test_errors_name_the_run_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="No training history at"):
        load_history(tmp_path)
    with pytest.raises(ConfigError, match=r"Run 'b' has no metric \['accuracy'\]; it logged \['loss'\]"):
        plot_curves({"b": {"loss": [1.0]}}, metrics=("accuracy",))
    with pytest.raises(ConfigError, match="Cannot read a training history from int"):
        load_history(3)
