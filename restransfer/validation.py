"""Pydantic validation errors as one paragraph: key path, value received, what is allowed, a hint.

The one formatter of configuration errors: the recipe loader, the resolved Plan and the data
layer's keyword checks all report through :func:`config_error`, so every fault reads the same::

    Recipe r.yaml is invalid:
      phases[0].optimizer.learning_rate: Input should be greater than 0 (received -0.1).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, RootModel, ValidationError

from restransfer.errors import ConfigError, clip, did_you_mean, short_repr


def key_path(loc: Sequence) -> str:
    """``("phases", 1, "optimizer", "learning_rate")`` -> ``"phases[1].optimizer.learning_rate"``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _inner_model(annotation: Any) -> Any:
    """The model class inside ``X | None``, ``list[X]`` and ``dict[str, X]``, else the annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in reversed(typing.get_args(annotation)):
            inner = _inner_model(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


def _walk(root: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, tuple]:
    """Follow ``loc`` through the schema: the model that holds the last key, and the clean loc.

    A tagged union (``RootModel`` with a ``members`` mapping) adds its tag to pydantic's
    location (``data.digits.per_class``); the tag is dropped from the path users see.
    """
    current: Any = root
    clean: list = []
    for part in loc:
        if isinstance(part, int):
            clean.append(part)
            continue
        if isinstance(current, type) and issubclass(current, RootModel):
            members = getattr(current, "members", {})
            if part in members:
                current = members[part]
                continue
        clean.append(part)
        fields = getattr(current, "model_fields", None) if isinstance(current, type) else None
        if fields is None or part not in fields:
            return (current if fields is not None else None), tuple(clean)
        current = _inner_model(fields[part].annotation)
    return None, tuple(clean)


def _allowed_from_expected(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected) or re.findall(r"(\w+)", expected)


def describe(error: ValidationError, root: type[BaseModel], prefix: Sequence = ()) -> list[str]:
    """One line per problem, e.g. ``phases[1].optimizer.learning_rate: ... (received -0.1)``.

    ``prefix`` is the location of ``root`` inside a larger document (``("data",)``).
    """
    lines = []
    for item in error.errors(include_url=False):
        parent, clean = _walk(root, item["loc"])
        path = clip(key_path((*prefix, *clean)))
        value = item.get("input")
        kind = item["type"]
        message = item["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            key = clean[-1]
            allowed = sorted(parent.model_fields) if parent is not None else []
            line = f"{path}: unknown key '{clip(str(key))}'." + did_you_mean(str(key)[:200], allowed)
            if allowed:
                line += f" Allowed keys here: {', '.join(allowed)}."
        elif kind == "union_tag_invalid":
            tags = _allowed_from_expected(item.get("ctx", {}).get("expected_tags", ""))
            tag = str(item.get("ctx", {}).get("tag"))
            line = (f"{key_path((*prefix, *clean, 'source'))}: {short_repr(tag)} is not allowed; allowed: "
                    f"{', '.join(tags)}." + did_you_mean(tag[:80], tags))
        elif kind == "missing":
            line = f"{path}: required key is missing."
        elif kind in ("literal_error", "enum"):
            choices = _allowed_from_expected(item.get("ctx", {}).get("expected", ""))
            line = (f"{path}: {short_repr(value)} is not allowed; allowed: {', '.join(choices)}."
                    + did_you_mean(str(value)[:80], choices))
        elif kind in ("value_error", "assertion_error"):
            # Our validators name the key themselves when it is not the error's own location.
            line = message if not path or re.match(r"^[\w\[\].]+: ", message) else f"{path}: {message}"
        else:
            line = f"{path}: {message} (received {short_repr(value)})."
        lines.append(line)
    return lines


def problems_error(source: str, lines: Sequence[str]) -> ConfigError:
    """A ``ConfigError`` (exit status 2) listing every problem found in ``source``."""
    head = f"{source} is invalid" if len(lines) == 1 else f"{source} has {len(lines)} problems"
    return ConfigError(head + ":\n  " + "\n  ".join(lines))


def config_error(error: ValidationError, root: type[BaseModel], source: str, prefix: Sequence = ()) -> ConfigError:
    """A ``ConfigError`` listing every problem of a pydantic ``ValidationError``."""
    return problems_error(source, describe(error, root, prefix))
