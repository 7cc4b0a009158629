"""Training pieces the recipe engine composes: optimizers, schedules, precision, callbacks.

``restransfer.train`` is also the library's entry point: calling the package runs a recipe,
``restransfer.train("recipe.yaml", overrides=[...], out="runs/x")``, and returns the ``Run``.
A package and a function cannot share the name ``restransfer.train`` (importing
``restransfer.train.precision`` rebinds it to the package), so the package itself is callable;
this keeps the call working whatever was imported first.
"""

from __future__ import annotations

import sys
import types


class _CallableTrainPackage(types.ModuleType):
    def __call__(self, recipe, overrides=None, out=None, **kwargs):
        """Train a recipe; see ``restransfer.recipe.engine.train``."""
        from restransfer.recipe.engine import train

        return train(recipe, overrides, out, **kwargs)


sys.modules[__name__].__class__ = _CallableTrainPackage
# restransfer.__getattr__ resolves "train" as getattr(restransfer.train, "train").
train = sys.modules[__name__]
