import subprocess
import sys


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "restransfer", *args], capture_output=True, text=True, timeout=300)


def test_models_show_prints_stage_table():
    result = run_cli("models", "show", "resnet50")
    assert result.returncode == 0, result.stderr
    assert "conv5" in result.stdout and "25,610,152" in result.stdout and "4.089 G" in result.stdout


def test_models_list():
    result = run_cli("models", "list", "resnext*")
    assert result.returncode == 0
    assert "resnext50_32x4d" in result.stdout and "resnet18" not in result.stdout


def test_unknown_model_is_one_clear_line_without_traceback():
    result = run_cli("models", "show", "resnet05")
    assert result.returncode == 2
    assert "Unknown model 'resnet05'" in result.stderr and "Did you mean 'resnet50'" in result.stderr
    assert "Traceback" not in result.stderr
