"""What every command prints through: a rich console that keeps logs greppable, and ``--quiet``.

On a terminal rich fits tables to the window. Anywhere else (a file, a pipe, CI logs) a table
cell must never be folded in the middle of a path or a class name, so the console gets a width
no line reaches: cells keep their words whole and every row stays on one line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

# Wide enough for any path; rich sizes tables to their content, so nothing is padded to it.
LOG_WIDTH = 10_000


def shown(text: object) -> str:
    """User-given text (a path, a class or phase name) ready for a rich console: never read as
    markup, and control characters (a newline, an ESC sequence) printed as escapes."""
    from rich.markup import escape

    from restransfer.files import printable

    return escape(printable(str(text)))


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """Give ``--quiet`` to every command that runs something (each parser with a handler)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_quiet(sub)
    if parser.get_default("handler") is not None and "--quiet" not in parser._option_string_actions:
        parser.add_argument("-q", "--quiet", action="store_true",
                            help="print only warnings and errors (the exit status tells the outcome)")


@contextlib.contextmanager
def quiet_stdout(quiet: bool) -> Iterator[None]:
    """With ``quiet``, everything a command prints to ``sys.stdout`` (ours, rich's, Keras'
    progress) goes nowhere; stderr (warnings, errors) is untouched."""
    if not quiet:
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        yield


def console(args: argparse.Namespace | None = None, *, stderr: bool = False) -> Any:
    """A ``rich.console.Console`` for a command's output; silent with ``--quiet``."""
    from rich.console import Console

    quiet = bool(getattr(args, "quiet", False))
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, quiet=quiet)
    return Console(file=stream, quiet=quiet, width=LOG_WIDTH, soft_wrap=True)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command line: ``warning: <message>`` on one line.

    Python's default prints the source file, line number and the code line, which reads as a
    crash in a log and splits one message over several lines. The message alone is what the
    user can act on; ``python -W error`` and warning filters still apply as usual.
    """
    text = " ".join(str(message).split())
    if category is not UserWarning:
        text = f"{text} ({category.__name__})"
    print(f"warning: {text}", file=file or sys.stderr, flush=True)
