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


COMMANDS = ["models", "bench", "data", "diagnose", "train", "validate", "evaluate", "predict", "cv", "sweep",
            "fit", "lr-find", "export", "demo", "report", "quickstart"]


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
    assert re.findall(r"^ {4}([\w-]+)", result.stdout, flags=re.MULTILINE) == COMMANDS
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subparsers.choices) == COMMANDS  # a new command must be added to COMMANDS above


def _leaf_parsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {path}".strip(), leaf) for path, leaf in _leaf_parsers(sub))
    if parser.get_default("handler") is not None:
        yield "", parser


def test_every_command_accepts_quiet():
    from restransfer.cli import build_parser

    leaves = dict(_leaf_parsers(build_parser()))
    assert {"train", "evaluate", "predict", "data check", "models list", "quickstart", "export"} <= set(leaves)
    for name, parser in leaves.items():
        assert "--quiet" in parser._option_string_actions, f"`restransfer {name}` has no --quiet"


def test_quiet_prints_nothing_and_keeps_the_exit_status():
    result = run_cli("models", "list", "resnet1*", "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    result = run_cli("models", "show", "resnet05", "-q")
    assert result.returncode == 2 and "Unknown model 'resnet05'" in result.stderr


def test_python_warnings_become_one_line_messages(monkeypatch, capsys):
    import warnings

    from restransfer import cli
    from restransfer.commands import models

    def warn(args):
        warnings.warn("weights.h5 has a classifier head (1000 classes) but the model has none\n"
                      "(include_top=False); skipping it.", stacklevel=2)
        warnings.warn("an old option", DeprecationWarning, stacklevel=2)
        return 0

    monkeypatch.setattr(models, "_list", warn)
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["models", "list"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: weights.h5 has a classifier head (1000 classes) but the model has none "
                   "(include_top=False); skipping it.",
                   "warning: an old option (DeprecationWarning)"]
    assert warnings.showwarning is before  # restored for whoever called main()
