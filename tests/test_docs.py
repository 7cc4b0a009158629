"""The documentation's generated pages: every recipe key, every command and every results file.

The site itself is built by `mkdocs build --strict` in tests/run.sh; these tests hold what the
generators must not forget, without MkDocs installed.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, RootModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs" / "hooks"))

import gen_benchmarks  # noqa: E402
import gen_cli  # noqa: E402
import gen_recipe  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def _models_in(annotation) -> list[type[BaseModel]]:
    """Every pydantic model a field's annotation can hold (through Optional, list, Annotated)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def _schema_keys() -> set[tuple[str, str]]:
    """``(section path, key)`` for every field of the Recipe, walked here independently of the
    generator: ``phases[]`` for list items, each data source's keys under ``data``."""
    from restransfer.data.schema import DataConfig
    from restransfer.recipe.schema import Recipe

    keys: set[tuple[str, str]] = set()

    def walk(path: str, model: type[BaseModel]) -> None:
        if issubclass(model, RootModel):
            assert model is DataConfig, f"a new union section at {path}: teach the reference generator"
            for member in DataConfig.members.values():
                walk(path, member)
            return
        for key, info in model.model_fields.items():
            keys.add((path, key))
            list_item = typing.get_origin(info.annotation) is list or any(
                typing.get_origin(arg) is list for arg in typing.get_args(info.annotation))
            for child in _models_in(info.annotation):
                walk(f"{path}.{key}{'[]' if list_item else ''}".lstrip("."), child)

    walk("", Recipe)
    return keys


def _documented_keys(page: str) -> set[tuple[str, str]]:
    keys, section = set(), None
    for line in page.splitlines():
        heading = re.match(r"^#{2,3} (?:`(?P<path>[^`]+)`|Top level)", line)
        if heading:
            section = heading.group("path") or ""
        row = re.match(r"^\| `(?P<key>[^`]+)` \|", line)
        if row and section is not None:
            keys.add((section, row.group("key")))
    return keys


def test_the_recipe_reference_names_every_schema_field():
    page = gen_recipe.render()
    expected = _schema_keys()
    # `source` is the union's selector: the page names every source in the data section instead.
    expected -= {("data", "source")}
    missing = expected - _documented_keys(page)
    assert not missing, f"keys missing from the generated recipe reference: {sorted(missing)}"
    for source in ("folder", "csv", "tfds", "digits", "glyphs", "arrays"):
        assert f"`data` with `source: {source}`" in page


def test_the_recipe_reference_states_types_defaults_and_bounds():
    page = gen_recipe.render()
    assert "| `epochs` | int, >= 1, <= 10,000 | required |" in page
    assert "| `precision` | `float32` \\| `mixed_float16` \\| `mixed_bfloat16` | `float32` |" in page
    # image_size's default differs per source: both are stated.
    assert re.search(r"\| `image_size` \| .* \| `\[224, 224\]` \(`digits`, `glyphs`: `\[32, 32\]`\) \|", page)


def test_the_cli_reference_names_every_command_and_option():
    page = gen_cli.render()
    for name, parser, _ in gen_cli.commands():
        assert f"`{name}` {{ #{name.replace(' ', '-')} }}" in page, name
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in page.split(f"`{name}` {{")[1], (name, option)
    assert "restransfer train" in page and "--set" in page


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_every_results_file_says_how_and_when_it_was_measured(path):
    facts = gen_benchmarks.provenance(json.loads(path.read_text()))
    assert facts["command"], f"{path.name} records no command: add the one that wrote it"
    assert re.match(r"\d{4}-\d{2}-\d{2}", facts["date"] or ""), f"{path.name} records no date"


def test_the_benchmarks_page_places_every_results_file_once():
    template = (REPO / "docs" / "benchmarks.md").read_text()
    placed = gen_benchmarks.DIRECTIVE.findall(template)
    assert len(placed) == len(set(placed))
    page = gen_benchmarks.render_page(template, RESULTS)
    for path in RESULTS.glob("*.json"):
        assert page.count(f"`benchmarks/results/{path.name}`, measured") == 1, path.name
    assert "<!-- results:" not in page


def test_a_results_file_placed_twice_or_missing_stops_the_page(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"command": "restransfer bench x", "date": "2026-12-04",
                                                 "results": [{"img_per_s": 1.5, "model": "m"}]}))
    with pytest.raises(ValueError, match="twice"):
        gen_benchmarks.render_page("<!-- results: a.json -->\n<!-- results: a.json -->", tmp_path)
    with pytest.raises(ValueError, match="not in"):
        gen_benchmarks.render_page("<!-- results: b.json -->", tmp_path)
    # A file the page does not place is still rendered, at the end.
    assert "`benchmarks/results/a.json`, measured 2026-12-04" in gen_benchmarks.render_page("# B", tmp_path)
    assert gen_benchmarks.render_values("{{ bench a.json results.0.img_per_s .2f }} img/s", tmp_path) == "1.50 img/s"
    with pytest.raises(ValueError, match="has no results.1"):
        gen_benchmarks.render_values("{{ bench a.json results.1.img_per_s }}", tmp_path)
