"""Validation errors as one paragraph: key path, value received, what is allowed, a suggestion."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, RootModel, ValidationError

from restransfer.errors import ConfigError, did_you_mean


def key_path(loc: tuple) -> str:
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

    Discriminated unions add their tag (``data.digits.per_class``); the tag is dropped from the
    path users see.
    """
    current: Any = root
    clean: list = []
    for part in loc:
        if isinstance(part, int):
            clean.append(part)
            continue
        if isinstance(current, type) and issubclass(current, RootModel):
            members = getattr(current, "_source_models", None) or _root_members(current)
            if part in members:
                current = members[part]
                continue
        clean.append(part)
        fields = getattr(current, "model_fields", None) if isinstance(current, type) else None
        if fields is None or part not in fields:
            return (current if fields is not None else None), tuple(clean)
        current = _inner_model(fields[part].annotation)
    return None, tuple(clean)


def _root_members(root: type[RootModel]) -> dict[str, type[BaseModel]]:
    from restransfer.data import schema as data_schema

    if root is data_schema.DataConfig:
        return dict(data_schema._MODELS)
    return {}


def _allowed_from_expected(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected) or re.findall(r"(\w+)", expected)


def describe(error: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem, e.g. ``phases[1].optimizer.learning_rate: ... (received -0.1)``."""
    lines = []
    for item in error.errors(include_url=False):
        parent, clean = _walk(root, item["loc"])
        path = key_path(clean)
        value = item.get("input")
        kind = item["type"]
        message = item["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            key = clean[-1]
            allowed = sorted(parent.model_fields) if parent is not None else []
            line = f"{path}: unknown key '{key}'." + did_you_mean(str(key), allowed)
            if allowed:
                line += f" Allowed keys here: {', '.join(allowed)}."
        elif kind == "missing":
            line = f"{path}: required key is missing."
        elif kind in ("literal_error", "enum"):
            choices = _allowed_from_expected(item.get("ctx", {}).get("expected", ""))
            line = (f"{path}: {_short(value)} is not allowed; allowed: {', '.join(choices)}."
                    + did_you_mean(str(value), choices))
        elif kind in ("value_error", "assertion_error"):
            # Our validators name the key themselves when it is not the error's own location.
            line = message if not path or re.match(r"^[\w\[\].]+: ", message) else f"{path}: {message}"
        else:
            line = f"{path}: {message} (received {_short(value)})."
        lines.append(line)
    return lines


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def config_error(error: ValidationError, root: type[BaseModel], source: str) -> ConfigError:
    """A ``ConfigError`` (exit status 2) listing every problem of a recipe."""
    lines = describe(error, root)
    head = f"Recipe {source} is invalid" if len(lines) == 1 else f"Recipe {source} has {len(lines)} problems"
    return ConfigError(head + ":\n  " + "\n  ".join(lines))
