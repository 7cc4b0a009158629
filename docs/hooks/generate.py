"""MkDocs hook (mkdocs.yml `hooks:`): the pages generated from the code and the results.

- `reference/recipe.md` from the pydantic schema (gen_recipe.py),
- `reference/cli.md` from the argument parsers (gen_cli.py),
- `benchmarks.md`: its results directives replaced by `benchmarks/results/*.json` (gen_benchmarks.py).

A plain hook rather than a plugin, so building the site needs only the `docs` extra.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
for path in (str(HERE), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

import gen_benchmarks  # noqa: E402
import gen_cli  # noqa: E402
import gen_recipe  # noqa: E402

GENERATED = {"reference/recipe.md": gen_recipe.render, "reference/cli.md": gen_cli.render}
# Figures that live with the notebooks that draw them, shown by the docs without a copy.
COPIED = {"images/gradient_flow.png": "notebooks/images/gradient_flow.png"}


def on_files(files, config):
    from mkdocs.structure.files import File

    for uri, render in GENERATED.items():
        files.append(File.generated(config, uri, content=render()))
    for uri, source in COPIED.items():
        files.append(File.generated(config, uri, abs_src_path=str(ROOT / source)))
    return files


def on_page_markdown(markdown, page, config, files):
    results = ROOT / "benchmarks" / "results"
    if page.file.src_uri == "benchmarks.md":
        markdown = gen_benchmarks.render_page(markdown, results)
    return gen_benchmarks.render_values(markdown, results)
