"""The CLI reference, generated from the argument parsers (`restransfer.cli.build_parser`).

One section per command (and per action of a command group such as `bench transfer`): what it
does, its usage line, and a table of its arguments with their defaults and choices, exactly as
`restransfer COMMAND --help` states them.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager

INTRO = """\
# Command-line reference

Every command answers `--help` with the same text; `--quiet` (before or after the command)
prints only warnings, errors and the exit status. Exit status: 0 success, 1 a check or a
verification failed, 2 a recipe, argument or data error (the message names the culprit), 130
interrupted. This page is generated from the argument parsers (`restransfer/cli.py`,
`restransfer/commands/`) each time the documentation is built.
"""


def commands(parser: argparse.ArgumentParser | None = None) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """``(full command, parser, one-line help)`` for every command and action, depth first."""
    if parser is None:
        from restransfer.cli import build_parser

        with _columns(100):
            parser = build_parser()
    found: list[tuple[str, argparse.ArgumentParser, str]] = []

    def visit(prefix: str, node: argparse.ArgumentParser) -> None:
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
                for name, child in action.choices.items():
                    found.append((f"{prefix} {name}", child, helps.get(name, "")))
                    visit(f"{prefix} {name}", child)

    visit(parser.prog, parser)
    return found


def render() -> str:
    """The whole reference page as Markdown."""
    from restransfer.cli import build_parser

    with _columns(100):
        parser = build_parser()
        found = commands(parser)
        lines = [INTRO, "| command | what it does |", "|---|---|"]
        lines += [f"| [`{name}`](#{_anchor(name)}) | {_cell(summary)} |" for name, _, summary in found]
        lines.append("")
        for name, child, summary in found:
            lines.append(_section(name, child, summary))
    return "\n".join(lines)


def _section(name: str, parser: argparse.ArgumentParser, summary: str) -> str:
    level = "###" if name.count(" ") > 1 else "##"
    lines = [f"{level} `{name}` {{ #{_anchor(name) } }}", ""]
    description = parser.description or summary
    if description:
        if isinstance(parser.formatter_class, type) and issubclass(
                parser.formatter_class, argparse.RawDescriptionHelpFormatter) and "\n" in description:
            lines += ["```text", description.strip(), "```", ""]
        else:
            lines += [" ".join(description.split()), ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    rows = [_row(action) for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
            and action.help != argparse.SUPPRESS]
    if rows:
        lines += ["| argument | default | description |", "|---|---|---|", *rows]
    if parser.epilog:
        lines += ["", " ".join(parser.epilog.split())]
    return "\n".join(lines) + "\n"


def _row(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(f"`{option}`" for option in action.option_strings)
        if action.nargs != 0:
            metavar = action.metavar or action.dest.upper()
            metavar = " ".join(metavar) if isinstance(metavar, tuple) else metavar
            names += f" `{metavar}`" + (" ..." if action.nargs in ("+", "*") else "")
    else:
        names = f"`{action.metavar or action.dest}`" + (" ..." if action.nargs in ("+", "*") else "")
        if action.nargs in ("?", "*"):
            names += " (optional)"
    help_text = (action.help or "") % {"default": action.default, "prog": "", "dest": action.dest} \
        if action.help and "%(" in action.help else (action.help or "")
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        help_text += (" " if help_text else "") + "Choices: " + ", ".join(f"`{c}`" for c in action.choices) + "."
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS, [], ()):
        default = ""
    elif isinstance(action.default, (list, tuple)):
        default = "`" + " ".join(map(str, action.default)) + "`"
    else:
        default = f"`{action.default}`"
    if action.required and action.option_strings:
        default = "required"
    return f"| {names} | {default} | {_cell(help_text)} |"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _anchor(name: str) -> str:
    return name.replace(" ", "-")


@contextmanager
def _columns(width: int):
    """argparse wraps usage lines to the terminal's width: the page uses a fixed one."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
