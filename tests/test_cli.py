import re
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
    # Only that line: TensorFlow's native start-up chatter (loaded with Keras) is filtered out.
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


COMMANDS = ["models", "bench", "data", "diagnose", "train", "validate", "evaluate", "predict", "export", "quickstart"]


def test_building_the_parser_imports_no_framework():
    # `restransfer --help` and argument errors must not wait seconds for TensorFlow to load.
    code = ("import sys, restransfer.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_help_lists_every_command():
    import argparse

    from restransfer.cli import build_parser

    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^ {4}(\w+)", result.stdout, flags=re.MULTILINE) == COMMANDS
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subparsers.choices) == COMMANDS  # a new command must be added to COMMANDS above
