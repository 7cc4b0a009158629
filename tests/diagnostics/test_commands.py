"""`restransfer diagnose`: tables printed, PNGs written, bad names refused with exit code 2."""

import pytest

from restransfer.cli import main

pytestmark = pytest.mark.tensorflow


def test_gradients_command_prints_stages_and_plots(tmp_path, capsys):
    plot = tmp_path / "flow.png"
    assert main(["diagnose", "gradients", "cifar_resnet20", "plain_cifar_resnet20", "--batch-size", "4",
                 "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "conv4" in out and "plain_cifar_resnet20" in out and plot.stat().st_size > 1000


def test_curves_and_complexity_commands(tmp_path, capsys):
    for name, losses in (("a", [2, 1]), ("b", [3, 2])):
        (tmp_path / name).mkdir()
        rows = "\n".join(f"{i},{v},{v / 4}" for i, v in enumerate(losses))
        (tmp_path / name / "history.csv").write_text("epoch,loss,val_accuracy\n" + rows + "\n")
    out = tmp_path / "curves.png"
    assert main(["diagnose", "curves", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert "loss, val_accuracy of 2 runs" in capsys.readouterr().out and out.exists()
    assert main(["diagnose", "complexity", "cifar_resnet20", "cifar_resnet56", "--plot",
                 str(tmp_path / "bars.png")]) == 0
    out = capsys.readouterr().out
    assert "269,722" in out and "853,018" in out


def test_unknown_model_exits_2(capsys):
    assert main(["diagnose", "gradients", "resnet05"]) == 2
    assert "Did you mean" in capsys.readouterr().err
