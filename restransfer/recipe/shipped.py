"""The recipes that ship with restransfer: the repository's ``recipes/`` folder.

pyproject.toml installs that folder as the package ``restransfer._recipes`` (one copy of each
file), so the recipes are found through ``importlib.resources`` from a wheel, a source
checkout or an editable install alike.

Example:
    >>> from restransfer.recipe.plan import load_plan
    >>> from restransfer.recipe.shipped import shipped_recipe, shipped_recipes
    >>> "quickstart_source.yaml" in shipped_recipes()
    True
    >>> with shipped_recipe("quickstart_source.yaml") as path:
    ...     plan = load_plan(path)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from restransfer.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PACKAGE = "restransfer._recipes"
# The package-data pattern in pyproject.toml: only these files are in a wheel.
SUFFIX = ".yaml"


def shipped_recipes() -> list[str]:
    """File names of the shipped recipes, sorted, e.g. ``["beans_resnet50_two_phase.yaml", ...]``."""
    return sorted(item.name for item in _folder().iterdir() if item.is_file() and item.name.endswith(SUFFIX))


@contextlib.contextmanager
def shipped_recipe(name: str) -> Iterator[Path]:
    """A file system path to the shipped recipe ``name`` while the ``with`` block runs.

    The path is the installed file itself, or a temporary copy when restransfer is imported
    from a zip archive.

    Raises:
        ConfigError: no shipped recipe has that name (the message lists the nearest ones).
    """
    names = shipped_recipes()
    if name not in names:
        raise ConfigError(f"restransfer ships no recipe '{name}'.{did_you_mean(name, names)} "
                          f"The shipped recipes are {names}.")
    with resources.as_file(_folder() / name) as path:
        yield path


def _folder() -> Traversable:
    try:
        return resources.files(PACKAGE)
    except ModuleNotFoundError:
        raise ConfigError(
            f"restransfer's shipped recipes (package {PACKAGE}) are not installed. Reinstall restransfer; in a "
            "source checkout run `pip install -e .` again (an editable install made before the recipes became "
            "package data does not see them)."
        ) from None
