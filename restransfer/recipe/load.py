"""Read a recipe: YAML (safe_load only), dotted overrides, strict validation.

Overrides use the same key paths as error messages: ``phases[0].epochs=3``,
``model.weights=runs/source``, ``data.augment.flip=true``. Each value is parsed with
``restransfer.yaml_io.parse_yaml``, ``yaml.safe_load`` with bounds (``3`` is an int, ``[conv1, conv2]`` a list, ``none`` stays a string).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from restransfer import yaml_io
from restransfer.errors import ConfigError, clip, short_repr
from restransfer.recipe.schema import Recipe
from restransfer.validation import config_error

_TOKEN = re.compile(r"([A-Za-z_][\w-]*)|\[(\d+)\]")


def read_yaml(path: str | Path) -> dict:
    """A recipe file as a dict, read by ``restransfer.yaml_io`` (``safe_load`` plus bounds:
    duplicate keys, alias bombs, deep nesting, non-UTF-8 bytes and huge integers are refused
    with the file, line and column)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Recipe file {path} does not exist (or is not a file).")
    data = yaml_io.read_yaml(path, what="Recipe")
    if not isinstance(data, dict):
        raise ConfigError(f"Recipe {path} must be a mapping of keys (model:, data:, phases: ...); "
                          f"it holds a {type(data).__name__}.")
    return data


def parse_key_path(path: str) -> list[str | int]:
    """``"phases[0].optimizer.learning_rate"`` -> ``["phases", 0, "optimizer", "learning_rate"]``."""
    tokens: list[str | int] = []
    position = 0
    for part in path.split("."):
        match_end = 0
        if not part:
            raise ConfigError(f"Override key '{clip(path)}' has an empty part; write keys like phases[0].epochs.")
        for match in _TOKEN.finditer(part):
            if match.start() != match_end or (match_end == 0 and match.group(2) is not None and not tokens):
                break
            tokens.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
            match_end = match.end()
        if match_end != len(part):
            raise ConfigError(f"Override key '{clip(path)}' is not a key path; write keys like "
                              "model.name or phases[0].optimizer.learning_rate.")
        position += len(part) + 1
    return tokens


def set_key(tree: dict, path: str, value: Any) -> None:
    """Set ``value`` at a dotted key path, creating missing mappings on the way."""
    tokens = parse_key_path(path)
    node: Any = tree
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        where = _join(tokens[: i + 1])
        if isinstance(token, int):
            if not isinstance(node, list):
                raise ConfigError(f"Override {clip(path)}: {clip(_join(tokens[:i]))} is not a list.")
            if token >= len(node):
                raise ConfigError(f"Override {clip(path)}: {clip(_join(tokens[:i]))} has {len(node)} items, "
                                  f"so index {token} is out of range.")
        elif not isinstance(node, dict):
            raise ConfigError(f"Override {clip(path)}: {clip(_join(tokens[:i])) or 'the recipe'} is not a mapping.")
        if last:
            node[token] = value
        else:
            if isinstance(token, str) and (token not in node or node[token] is None):
                node[token] = {}
            node = node[token]
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"Override {clip(path)}: {clip(where)} holds {short_repr(node)}, not a mapping or list.")


def _join(tokens: Sequence[str | int]) -> str:
    out = ""
    for t in tokens:
        out += f"[{t}]" if isinstance(t, int) else (f".{t}" if out else t)
    return out


def parse_overrides(overrides: Sequence[str] | Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """``["a.b=3"]`` or ``{"a.b": 3}`` -> ``[("a.b", 3)]``; string values go through yaml_io.parse_yaml."""
    if not overrides:
        return []
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    pairs = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Override '{clip(item)}' must look like KEY=VALUE, e.g. phases[0].epochs=3.")
        value = yaml_io.parse_yaml(text, source=f"Override '{clip(item)}'") if text.strip() else ""
        pairs.append((key.strip(), value))
    return pairs


def load_recipe(recipe: str | Path | Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any] | None = None,
                *, base_dir: str | Path | None = None, check_paths: bool = True) -> Recipe:
    """Read, override and validate a recipe; raise ``ConfigError`` naming every problem.

    The result is what the user wrote, checked key by key; ``restransfer.recipe.plan.resolve``
    (or ``load_plan``, which does both) checks what it implies and decides the rest.

    Args:
        recipe: a YAML file or an already-parsed mapping.
        overrides: ``["phases[0].epochs=3", ...]`` or ``{"phases[0].epochs": 3}``.
        base_dir: folder for relative paths in the recipe (data, weights); default: the
            current working directory, like every path given on the command line.
        check_paths: refuse data paths that do not exist (off to read back a finished run's
            recipe, whose data may have moved).

    Example:
        >>> recipe = load_recipe("recipes/quickstart_source.yaml", ["phases[0].epochs=1"])
        >>> recipe.phases[0].epochs
        1
    """
    if isinstance(recipe, Mapping):
        tree, source = copy.deepcopy(dict(recipe)), "(mapping)"
    else:
        tree, source = read_yaml(recipe), str(recipe)
    for key, value in parse_overrides(overrides):
        set_key(tree, key, value)
    context = {"base_dir": Path(base_dir) if base_dir is not None else Path.cwd(), "check_paths": check_paths}
    try:
        return Recipe.model_validate(tree, context=context)
    except ValidationError as error:
        raise config_error(error, Recipe, f"Recipe {source}") from None


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (absolute paths); in-memory arrays become a summary."""
    return yaml.safe_dump(recipe_dict(recipe), sort_keys=False)


def recipe_dict(recipe: Recipe) -> dict:
    data = recipe.data.root
    if data.source == "arrays":
        summary = {k: _array_summary(getattr(data, k)) for k in ("x_train", "y_train", "x_val", "y_val",
                                                                   "x_test", "y_test")}
        dumped = recipe.model_dump(mode="json", exclude={"data"})
        data_dict = data.model_dump(mode="json", exclude=set(summary))
        dumped["data"] = {**data_dict, **summary}
        return _order(dumped)
    return _order(recipe.model_dump(mode="json"))


def _order(dumped: dict) -> dict:
    keys = list(Recipe.model_fields)
    return {k: dumped[k] for k in keys if k in dumped}


def _array_summary(value: Any) -> str | None:
    if value is None:
        return None
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    return f"<array shape={tuple(shape) if shape is not None else '?'} dtype={dtype}>"
