"""The recipes that ship with restransfer, installed as the package ``restransfer._recipes``.

pyproject.toml maps this folder to that package name, so wheels carry the YAML files without a
second copy, and ``restransfer.recipe.shipped`` finds them through ``importlib.resources``.
This file must stay: setuptools' editable installs cannot import a mapped folder without it
(pypa/setuptools#4943).
"""
