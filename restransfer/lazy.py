"""Public names imported on first use, so a light import never loads Keras, TensorFlow or NumPy."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``names[name]`` (a module path) when ``name`` is first read.

    Example:
        >>> __getattr__ = lazy_getattr(__name__, {"load_data": "restransfer.data.pipeline"})
    """

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    return __getattr__
