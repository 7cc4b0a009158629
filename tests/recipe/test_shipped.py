"""The top-level recipes/ folder ships inside restransfer as the package restransfer._recipes."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from restransfer.errors import ConfigError
from restransfer.recipe.load import load_recipe
from restransfer.recipe.shipped import PACKAGE, SUFFIX, shipped_recipe, shipped_recipes

REPO = Path(__file__).resolve().parents[2]
ON_DISK = sorted(p.name for p in (REPO / "recipes").iterdir() if p.is_file() and p.name != "__init__.py")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_file_in_recipes_is_reachable_through_the_package():
    assert ON_DISK == shipped_recipes()  # a file the package-data pattern misses would be absent here
    for name in ON_DISK:
        with shipped_recipe(name) as path:
            assert path.read_bytes() == (REPO / "recipes" / name).read_bytes()


def test_quickstart_recipe_loads_from_the_package():
    with shipped_recipe("quickstart_source.yaml") as path:
        recipe = load_recipe(path)
    assert recipe.model.name == "cifar_resnet20" and recipe.data.source == "glyphs" and recipe.data.per_class == 80


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(ConfigError, match=r"no recipe 'quickstart_sorce.yaml'\. Did you mean 'quickstart_source.yaml'"):
        with shipped_recipe("quickstart_sorce.yaml"):
            pass


def test_pyproject_maps_the_recipes_folder_and_lists_every_package():
    from setuptools import find_packages

    assert PYPROJECT["package-dir"] == {PACKAGE: "recipes"}
    assert PYPROJECT["package-data"] == {PACKAGE: ["*" + SUFFIX]}
    assert sorted(PYPROJECT["packages"]) == sorted([*find_packages(str(REPO), include=["restransfer*"]), PACKAGE])


def test_the_wheel_holds_every_recipe(tmp_path):
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("restransfer", "recipes"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
         "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / "wheel").glob("restransfer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        shipped = {Path(n).name: archive.read(n) for n in names if n.startswith("restransfer/_recipes/")}
    assert {name: (REPO / "recipes" / name).read_bytes() for name in ON_DISK}.items() <= shipped.items()
    assert "restransfer/commands/models.py" in names and "restransfer/models/weights/readers.py" in names
