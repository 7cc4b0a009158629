"""The bounded YAML reader: safe_load's results, and clear refusals of what would hang or lie."""

import os
import threading
import time

import pytest
import yaml

from restransfer.errors import ConfigError
from restransfer.yaml_io import MAX_DEPTH, parse_yaml, read_yaml

BOMB = """\
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def refused(text, *needles):
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, source="Recipe r.yaml")
    message = str(caught.value)
    assert message.startswith("Recipe r.yaml"), message
    for needle in needles:
        assert needle in message, message
    assert "\n" not in message
    return message


def test_plain_documents_read_like_safe_load():
    text = ("model: {name: resnet18, weights: null}\nphases:\n  - epochs: 3\n    lr: 1.0e-3\n"
            "base: &base {flip: true}\naugment:\n  <<: *base\n  flip: false\nwhen: 2024-01-02\n"
            "big: 9223372036854775807\nbigger: 18446744073709551616\n")
    assert parse_yaml(text) == yaml.safe_load(text)
    assert parse_yaml("") is None
    assert parse_yaml("\ufeffa: 1".encode("utf-8-sig")) == {"a": 1}


def test_an_alias_bomb_is_refused_at_once():
    start = time.perf_counter()
    message = refused(BOMB, "alias bomb", "line ")
    assert time.perf_counter() - start < 2, message
    refused("a: &a [1, *a]\n", "contains it")


def test_a_duplicate_key_is_refused_naming_both_lines():
    refused("model:\n  name: resnet18\n  name: resnet50\n",
            "at line 3, column 3", "'name' appears twice", "first at line 2, column 3")
    refused("phases:\n  - epochs: 1\n    epochs: 2\n", "'epochs' appears twice")


def test_deep_nesting_non_utf8_bytes_and_huge_integers_are_refused():
    refused("[" * 5000, f"more than {MAX_DEPTH} levels", "line 1")
    refused("a: [" + "[" * 50 + "]" * 50 + "]\nb: &x " + "[" * 40 + "1" + "]" * 40 + "\nc: " +
            "[" * 30 + "*x" + "]" * 30 + "\n", "expanded")
    refused(b"model:\n  name: r\xe9snet\n", "not UTF-8", "byte 0xe9 at line 2, column 10")
    assert parse_yaml("data: {batch_size: 18446744073709551616}\n")["data"]["batch_size"] == 2**64
    refused("a: " + "9" * 5000 + "\n", "5000 digits", "at line 1, column 4")
    refused("a: \x00\n", "line 1, column 4", "does not allow")


def test_python_tags_and_syntax_errors_are_config_errors():
    refused("x: !!python/object/apply:os.system ['true']\n", "not valid YAML", "line 1")
    refused("a: [1, 2\nb: 3\n", "not valid YAML", "line")


def test_read_yaml_names_files_that_are_no_regular_files(tmp_path):
    (tmp_path / "ok.yaml").write_text("a: 1\n")
    assert read_yaml(tmp_path / "ok.yaml", what="Recipe") == {"a": 1}
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    result = {}
    reader = threading.Thread(target=lambda: result.update(error=pytest.raises(
        ConfigError, read_yaml, fifo, what="Recipe").value), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO hung"
    assert "FIFO" in str(result["error"]) and "Recipe" in str(result["error"])
    with pytest.raises(ConfigError, match="does not exist"):
        read_yaml(tmp_path / "missing.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("a: 1\n" * 300_000)
    with pytest.raises(ConfigError, match="above the limit"):
        read_yaml(big)


def test_short_repr_is_bounded_whatever_the_value():
    from restransfer.errors import short_repr

    nested = ["x"] * 9
    for _ in range(8):
        nested = [nested] * 9           # 9**9 leaves when expanded
    start = time.perf_counter()
    text = short_repr(nested)
    assert time.perf_counter() - start < 0.5
    assert len(text) <= 80
    assert short_repr(10 ** 6000) == "<an integer of about 6,001 digits>"
    assert len(short_repr("a" * 500, 40)) <= 40
    assert short_repr("line\nbreak") == "'line\\nbreak'"


def test_a_huge_document_without_aliases_is_not_called_an_alias_bomb():
    text = "phases:\n" + "".join(f"  - {{name: p{i}, epochs: 1, freeze: none}}\n" for i in range(20_000))
    message = refused(text, "more than 100,000 values", "without aliases")
    assert "alias bomb" not in message


@pytest.mark.parametrize("item", ["k" * 100_000 + "=1", "phases[0].epochs=[" + "1," * 50_000 + "",
                                  "=" + "v" * 100_000,
                                  "phases[0]." + "k" * 100_000 + ".x=1"])
def test_a_huge_set_key_or_value_is_not_echoed_whole(item):
    from restransfer.recipe.load import load_recipe

    with pytest.raises(ConfigError) as caught:
        load_recipe("recipes/quickstart_scratch.yaml", [item])
    assert len(str(caught.value)) < 2000, str(caught.value)[:300]
