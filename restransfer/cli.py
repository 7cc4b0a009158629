"""The `restransfer` command: parse arguments, call the library, print results.

Each command group is a module of ``restransfer.commands`` with a ``register(subparsers)``
function; those modules import nothing heavy at module level, so ``restransfer --help`` stays
instant (tests/test_cli.py checks that building the parser loads no Keras, TensorFlow or JAX).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings

from restransfer.commands.output import add_quiet, quiet_stdout, show_warning
from restransfer.errors import RestransferError
from restransfer.native_logs import filtered_stderr

# TensorFlow's C++ chatter (CUDA probing, CPU features) hides our own output; set before any
# command module can import TensorFlow. What absl prints before it reads this is filtered by
# `filtered_stderr`.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COMMAND_MODULES = (
    "restransfer.commands.models",
    "restransfer.commands.bench",
    "restransfer.commands.data",
    "restransfer.commands.diagnostics",
    "restransfer.commands.recipe",
    "restransfer.commands.cv",
    "restransfer.commands.fit",
    "restransfer.commands.lr_find",
    "restransfer.commands.export",
    "restransfer.commands.demo",
    "restransfer.commands.report",
    "restransfer.commands.quickstart",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restransfer", description="Transfer learning with ResNet and ResNeXt on Keras 3."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    add_quiet(parser)
    return parser


# What the machine, not the input, refuses: a read-only file system, a full disk or quota.
_DISK_ERRNOS = {errno.EROFS: "choose a writable folder (train --out, report --out, --json)",
                errno.ENOSPC: "free some space, then rerun the same command (a run resumes from its last "
                              "complete epoch)",
                errno.EDQUOT: "free some space under your quota, then rerun the same command (a run resumes "
                              "from its last complete epoch)"}


def disk_error_message(error: OSError) -> str | None:
    """One paragraph for a read-only file system or a full disk (naming the file), else None."""
    hint = _DISK_ERRNOS.get(error.errno)
    if hint is None:
        return None
    from restransfer.files import printable

    where = f" '{printable(str(error.filename))}'" if error.filename else ""
    return f"cannot write{where}: {error.strerror or error}; {hint}."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous, warnings.showwarning = warnings.showwarning, show_warning
    try:
        with filtered_stderr(), quiet_stdout(getattr(args, "quiet", False)):
            try:
                return int(args.handler(args) or 0)
            except RestransferError as error:
                print(f"error: {error}", file=sys.stderr)
                return error.exit_code
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return 130
            except OSError as error:
                message = disk_error_message(error)
                if message is None:
                    raise
                print(f"error: {message}", file=sys.stderr)
                return 1
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
