"""The `restransfer` command: parse arguments, call the library, print results.

Each command group lives in a ``commands`` module with a ``register(subparsers)`` function
that imports nothing heavy at module level, so ``restransfer --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from restransfer.errors import RestransferError

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) hides our own output; set
# before any command module can import TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COMMAND_MODULES = (
    "restransfer.models.commands",
    "restransfer.bench.commands",
    "restransfer.data.commands",
    "restransfer.diagnostics.commands",
    "restransfer.recipe.commands",
    "restransfer.export.commands",
    "restransfer.quickstart",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restransfer", description="Transfer learning with ResNet and ResNeXt on Keras 3."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except RestransferError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
