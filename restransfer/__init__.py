"""restransfer: transfer learning with ResNet and ResNeXt classifiers on Keras 3.

Model code imports Keras only, so it runs on the TensorFlow and JAX backends alike; the parts
that need TensorFlow (tf.data input pipelines, SavedModel export) import it in their own
modules, loaded on first use.
"""

from __future__ import annotations

import importlib

from restransfer.errors import ConfigError, DataError, RestransferError, WeightsError
from restransfer.models import (
    create_model,
    freeze_stages,
    list_models,
    model_stages,
    replace_head,
    stage_names,
)

__version__ = "0.1.0"

# Public names whose modules are imported only when used (they may import TensorFlow).
_LAZY = {
    "stage_table": "restransfer.diagnostics.complexity",
    "load_recipe": "restransfer.recipe.load",
    "train": "restransfer.recipe.engine",
    "evaluate": "restransfer.recipe.evaluate",
    "predict": "restransfer.recipe.predict",
    "gradient_norms": "restransfer.diagnostics.gradients",
    "linear_probe": "restransfer.diagnostics.probe",
    "compare_norms": "restransfer.diagnostics.normalization",
    "plot_curves": "restransfer.diagnostics.curves",
    "export_run": "restransfer.export",
    "export_model": "restransfer.export",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'restransfer' has no attribute '{name}'")


__all__ = [
    "ConfigError",
    "DataError",
    "RestransferError",
    "WeightsError",
    "create_model",
    "freeze_stages",
    "list_models",
    "model_stages",
    "replace_head",
    "stage_names",
    *_LAZY,
]
