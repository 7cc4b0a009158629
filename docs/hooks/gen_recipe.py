"""The recipe reference, generated from the pydantic schema (`restransfer.recipe.schema.Recipe`).

Every section of a recipe is one table: key, type (with its bounds), default and description, as
the schema declares them, so the page cannot drift from what `validate` accepts. The `data:`
section is a union selected by `source`: keys every source takes are listed once, then each
source's own keys.
"""

from __future__ import annotations

import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel, RootModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

INTRO = """\
# Recipe reference

A recipe is one YAML file that describes a whole run; `restransfer validate RECIPE` checks it
without training and `--set KEY=VALUE` overrides any key below (`--set phases[1].epochs=5`).
Unknown keys, wrong types and values out of range are refused with the key's path and a
suggestion. This page is generated from the schema (`restransfer/recipe/schema.py`,
`restransfer/data/schema.py`) each time the documentation is built.

Types: `int` and `number` refuse strings and booleans (`epochs: "3"` is an error); `null` is
YAML's empty value (`~`, `null`, or the key left out).
"""

_SCALARS = {str: "string", int: "int", float: "number", bool: "bool", Path: "path", type(None): "null",
            Any: "any"}


def sections(root: type[BaseModel] | None = None) -> list[tuple[str, type[BaseModel], str | None]]:
    """Every model reachable from ``root`` (default: the Recipe) as ``(path, model, source)``.

    ``path`` is the dotted key (``phases[].optimizer``); ``source`` names the data source of a
    member of the ``data`` union (None elsewhere; ``"*"`` for the keys every source shares).
    """
    if root is None:
        from restransfer.recipe.schema import Recipe

        root = Recipe
    found: list[tuple[str, type[BaseModel], str | None]] = []

    def visit(path: str, model: type[BaseModel], source: str | None = None) -> None:
        members = _union_members(model)
        if members:
            found.append((path, _shared_model(members), "*"))
            for name, member in members.items():
                found.append((path, member, name))
                for key, info in _own_fields(member, members).items():
                    for child, suffix in _nested_models(info.annotation):
                        visit(f"{path}.{key}{suffix}", child)
            for key, info in _shared_fields(members).items():
                for child, suffix in _nested_models(info.annotation):
                    visit(f"{path}.{key}{suffix}", child)
            return
        found.append((path, model, source))
        for key, info in model.model_fields.items():
            for child, suffix in _nested_models(info.annotation):
                visit(f"{path}.{key}{suffix}" if path else f"{key}{suffix}", child)

    visit("", root)
    seen, unique = set(), []
    for entry in found:
        if (entry[0], entry[2]) not in seen:
            seen.add((entry[0], entry[2]))
            unique.append(entry)
    return unique


def render() -> str:
    """The whole reference page as Markdown."""
    out = [INTRO]
    for path, model, source in sections():
        out.append(_section(path, model, source))
    return "\n".join(out)


def _section(path: str, model: type[BaseModel], source: str | None) -> str:
    title = f"`{path}`" if path else "Top level"
    anchor = _anchor(path, source)
    if source == "*":
        members = _union_members(_model_at(path))
        heading = f"## {title}: keys of every source {{ #{anchor} }}"
        fields = _shared_fields(members)
        doc = (f"`source` selects one of {', '.join(f'`{m}`' for m in members)} (default "
               f"`{_default_source(path)}`); each source's own keys follow.")
        defaults = {key: _defaults_by_member(members, key) for key in fields}
    elif source is not None:
        members = _union_members(_model_at(path))
        heading = f"### `{path}` with `source: {source}` {{ #{anchor} }}"
        fields = {k: v for k, v in _own_fields(model, members).items() if k != "source"}
        doc = _docstring(model)
        defaults = {}
    else:
        heading = f"## {title} {{ #{anchor} }}"
        fields = model.model_fields
        doc = _docstring(model)
        defaults = {}
    lines = [heading, ""]
    if doc:
        lines += [doc, ""]
    if not fields:
        lines.append("No keys of its own.\n")
        return "\n".join(lines)
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for key, info in fields.items():
        default = defaults.get(key) or _default(info)
        lines.append(f"| `{key}` | {_cell(_type(info.annotation, path, key))}{_bounds(info)} | {_cell(default)} | "
                     f"{_cell(info.description or '')} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- types
def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _nested_models(annotation: Any, suffix: str = "") -> list[tuple[type[BaseModel], str]]:
    """The models a field holds: ``(model, path suffix)``, ``[]`` for list items."""
    annotation = _strip(annotation)
    if _is_model(annotation):
        return [(annotation, suffix)]
    origin = typing.get_origin(annotation)
    if _is_union(annotation):
        return [found for arg in typing.get_args(annotation) for found in _nested_models(arg, suffix)]
    if origin in (list, tuple):
        return [found for arg in typing.get_args(annotation) for found in _nested_models(arg, suffix + "[]")]
    return []


def _type(annotation: Any, path: str = "", key: str = "") -> str:
    annotation = _strip(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{_yaml(v)}`" for v in args)
    if _is_union(annotation):
        parts = [_type(arg, path, key) for arg in args if _strip(arg) is not type(None)]
        if "number" in parts and "int" in parts:  # Number = StrictFloat | StrictInt: ints are numbers
            parts.remove("int")
        if len(parts) < len(args):
            parts.append("`null`")
        return " \\| ".join(dict.fromkeys(parts))
    if origin is list:
        return f"list of {_type(args[0], path, key)}" if args else "list"
    if origin is tuple:
        return "[" + ", ".join(_type(a, path, key) for a in args) + "]"
    if origin is dict:
        return f"map of {_type(args[0], path, key)} to {_type(args[1], path, key)}"
    if _is_model(annotation):
        if _union_members(annotation):
            child = f"{path}.{key}" if path else key
            return f"section ([`{child}`](#{_anchor(child, '*')}))"
        child = f"{path}.{key}" if path else key
        return f"section ([`{child}`](#{_anchor(child, None)}))"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: FieldInfo) -> str:
    words = []
    for item in info.metadata:
        for attribute, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(item, getattr(annotated_types, attribute.capitalize())):
                words.append(f"{symbol} {_number(getattr(item, attribute))}")
        unit = "characters" if _is_text(info.annotation) else "items"
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            words.append(f"at least {item.min_length} {unit if item.min_length > 1 else unit[:-1]}")
        if isinstance(item, annotated_types.MaxLen):
            words.append(f"at most {item.max_length} {unit}")
    return f", {', '.join(words)}" if words else ""


def _is_text(annotation: Any) -> bool:
    annotation = _strip(annotation)
    if _is_union(annotation):
        return all(_is_text(arg) for arg in typing.get_args(annotation) if _strip(arg) is not type(None))
    return annotation is str


def _number(value: Any) -> str:
    if isinstance(value, int) and value >= 1 << 16 and (value & (value - 1)) == 0:
        return f"2^{value.bit_length() - 1}"
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        try:
            value = info.default_factory()
        except TypeError:  # a factory that takes the validated data
            return ""
        if isinstance(value, BaseModel):
            return "its defaults"
        return f"`{_yaml(value)}`" if value not in ({}, []) else f"`{_yaml(value)}` (empty)"
    if info.default is PydanticUndefined:
        return ""
    return f"`{_yaml(info.default)}`"


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|").replace("\\\\|", "\\|")


def _docstring(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    if not doc or doc is BaseModel.__doc__ or doc is RootModel.__doc__:
        return ""
    first, _, rest = doc.partition("\n")
    text = first.strip() + ("\n" + textwrap.dedent(rest) if rest else "")
    # Examples are for Python readers of the module; the page shows YAML.
    text = text.split("Example:")[0].split("Examples:")[0].strip()
    return text.replace("``", "`")


def _anchor(path: str, source: str | None) -> str:
    slug = (path or "top-level").replace("[]", "").replace(".", "-").replace("_", "-")
    if source == "*":
        return slug
    return f"{slug}-source-{source}" if source else slug


# ----------------------------------------------------------------------------------- unions
def _union_members(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """``{source: model}`` of a RootModel over a tagged union of models (``data:``), else {}."""
    if not (inspect.isclass(model) and issubclass(model, RootModel)):
        return {}
    members = getattr(model, "members", None)
    if isinstance(members, dict):
        return dict(members)
    root = _strip(model.model_fields["root"].annotation)
    found = {}
    for arg in typing.get_args(root) if _is_union(root) else ():
        arg = _strip(arg)
        if _is_model(arg) and "source" in arg.model_fields:
            found[str(arg.model_fields["source"].default)] = arg
    return found


def _shared_fields(members: dict[str, type[BaseModel]]) -> dict[str, FieldInfo]:
    models = list(members.values())
    return {key: info for key, info in models[0].model_fields.items()
            if key != "source" and all(key in m.model_fields for m in models[1:])}


def _own_fields(model: type[BaseModel], members: dict[str, type[BaseModel]]) -> dict[str, FieldInfo]:
    shared = _shared_fields(members)
    return {key: info for key, info in model.model_fields.items() if key not in shared}


def _shared_model(members: dict[str, type[BaseModel]]) -> type[BaseModel]:
    return next(iter(members.values()))


def _defaults_by_member(members: dict[str, type[BaseModel]], key: str) -> str:
    by_default: dict[str, list[str]] = {}
    for name, model in members.items():
        by_default.setdefault(_default(model.model_fields[key]), []).append(name)
    if len(by_default) == 1:
        return ""
    common = max(by_default, key=lambda d: len(by_default[d]))
    others = "; ".join(f"{', '.join(f'`{n}`' for n in names)}: {default}"
                       for default, names in by_default.items() if default != common)
    return f"{common} ({others})"


def _model_at(path: str) -> type[BaseModel]:
    from restransfer.recipe.schema import Recipe

    model: Any = Recipe
    for key in path.replace("[]", "").split("."):
        members = _union_members(model)
        fields = _shared_fields(members) if members else model.model_fields
        model = _nested_models(fields[key].annotation)[0][0]
    return model


def _default_source(path: str) -> str:
    model = _model_at(path)
    factory = model.model_fields["root"].default_factory
    return getattr(factory, "model_fields", {}).get("source").default if factory else ""
