"""Read YAML that someone else wrote: ``yaml.safe_load`` semantics, with bounds.

A recipe, a run folder's ``recipe.yaml`` or an override value may come from anyone. On top of
``safe_load`` (plain data only, no Python objects) `read_yaml` and `parse_yaml` refuse, each
with a one-paragraph `ConfigError` that names the file, line and column:

- bytes that are not UTF-8 text, and files that are not regular files or are over ``MAX_BYTES``;
- a key given twice in one mapping (``safe_load`` silently keeps the last one);
- nesting deeper than ``MAX_DEPTH`` (a 5000-deep ``[[[...`` overflows the parser's stack);
- documents whose anchors and aliases expand to more than ``MAX_VALUES`` values (a few hundred
  bytes of nested aliases, an "alias bomb", expand to billions: anything that walks the value
  -- validation, ``repr``, a copy -- would hang), and aliases that contain themselves;
- integers of more than ``MAX_INT_DIGITS`` digits (a 10,000-digit one makes ``int()`` fail;
  ranges of real settings are the schema's).

Messages format values with ``restransfer.errors.short_repr``, which is bounded whatever the
value holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from restransfer.errors import ConfigError, short_repr
from restransfer.files import FileReadError, read_regular_file

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000
# Ranges are the schema's (which names the key); this bound only keeps int() and repr() from
# failing on absurd literals (Python refuses more than 4,300 digits).
MAX_INT_DIGITS = 100


class _Refused(yaml.YAMLError):
    """A document our loader refuses; ``mark`` is where the problem starts."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys, deep nesting and 64-bit overflows."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"values are nested more than {MAX_DEPTH} levels deep",
                               self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` is meant to be overridden by the keys beside it
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable: safe_load's own error names it
                if first is not None:
                    raise _Refused(
                        f"the key {short_repr(key, 60)} appears twice in one mapping (first at "
                        f"line {first.line + 1}, column {first.column + 1}); YAML would keep only "
                        "the last one silently. Remove one of them", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise _Refused(f"an integer of {digits} digits is beyond any setting's range",
                           node.start_mark)
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose aliases expand to more than ``MAX_VALUES`` values, nest deeper
    than ``MAX_DEPTH`` once expanded, or contain themselves.

    Aliases share nodes, so this counts with one visit per distinct node (iteratively: the
    expanded depth may be far beyond Python's recursion limit).
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    shared = False  # some node is reached twice: an alias
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_VALUES and shared:
                raise _Refused(
                    f"its anchors and aliases expand to more than {MAX_VALUES:,} values (an alias "
                    "bomb); write the values out or use fewer nested aliases", node.start_mark)
            if size[key] > MAX_VALUES:
                raise _Refused(
                    f"it holds more than {MAX_VALUES:,} values, without aliases: far more than any "
                    "recipe needs; is it the right file?", node.start_mark)
            if depth[key] > MAX_DEPTH:
                raise _Refused(f"once its aliases are expanded, values are nested more than "
                               f"{MAX_DEPTH} levels deep", node.start_mark)
            continue
        if key in size:
            shared = True
            continue
        if key in on_path:
            raise _Refused("an alias refers to a value that contains it (a value that would be "
                           "infinitely deep)", node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        shared = shared or any(id(child) in size for child in children)
        stack.extend((child, False) for child in children if id(child) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _where(mark: yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f" at line {line}, column {column}"


def parse_yaml(text: str | bytes, *, source: str = "YAML text") -> Any:
    """Parse one YAML document like ``yaml.safe_load``, within the module's bounds.

    Args:
        text: the document; bytes must be UTF-8 (a UTF-8 byte-order mark is allowed).
        source: what the text is, for messages, e.g. ``"Recipe recipes/a.yaml"`` or
            ``"Override 'phases[0].epochs=3'"``.

    Raises:
        ConfigError: invalid YAML, or a document refused (see the module docstring); the
            message names ``source``, the line and the column.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            head = text[:error.start]
            line = head.count(b"\n") + 1
            column = error.start - (head.rfind(b"\n") + 1) + 1
            raise ConfigError(
                f"{source} is not UTF-8 text: byte 0x{text[error.start]:02x} at line {line}, "
                f"column {column} is not valid UTF-8. Save the file as UTF-8.") from None
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.reader.ReaderError as error:
        raise ConfigError(
            f"{source} is not valid YAML{_position(text, error.position)}: it holds the "
            f"control character U+{error.character:04X}, which YAML does not allow. Remove it."
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        if context and not isinstance(error, _Refused):
            problem = f"{context}, {problem}"
        label = "is refused" if isinstance(error, _Refused) else "is not valid YAML"
        raise ConfigError(f"{source} {label}{_where(mark)}: {problem}.") from None
    except RecursionError:
        raise ConfigError(f"{source} is refused: values are nested too deeply "
                          f"(at most {MAX_DEPTH} levels).") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: str | os.PathLike, *, what: str = "YAML file",
              max_bytes: int = MAX_BYTES) -> Any:
    """Read and parse a YAML file (see `parse_yaml`); ``what`` names it, e.g. ``"Recipe"``.

    Raises:
        ConfigError: the file is missing, not a regular file, over ``max_bytes``, not UTF-8,
            invalid YAML or refused.
    """
    source = f"{what} {os.fspath(path)}"
    if not Path(path).exists():
        raise ConfigError(f"{source} does not exist.")
    try:
        data = read_regular_file(path, max_bytes)
    except FileReadError as error:
        raise ConfigError(f"{source} cannot be read: {error.reason}.") from None
    return parse_yaml(data, source=source)
