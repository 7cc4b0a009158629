"""restransfer: transfer learning with ResNet and ResNeXt classifiers on Keras 3.

Model code imports Keras only, so it runs on the TensorFlow and JAX backends alike; the parts
that need TensorFlow (tf.data input pipelines, SavedModel export) import it in their own
modules, loaded on first use.
"""

from __future__ import annotations

from restransfer.errors import ConfigError, DataError, RestransferError, WeightsError
from restransfer.lazy import lazy_getattr

__version__ = "0.1.0"

# Public names, imported on first use: `import restransfer` (and so `restransfer --help`) stays
# instant, and nothing imports TensorFlow unless it needs it.
_LAZY = {
    "create_model": "restransfer.models",
    "freeze_stages": "restransfer.models",
    "list_models": "restransfer.models",
    "model_stages": "restransfer.models",
    "replace_head": "restransfer.models",
    "stage_names": "restransfer.models",
    "stage_table": "restransfer.diagnostics.complexity",
    "load_recipe": "restransfer.recipe.load",
    "load_plan": "restransfer.recipe.plan",
    "train": "restransfer.recipe.engine",
    "cross_validate": "restransfer.recipe.cross_validation",
    "sweep": "restransfer.recipe.sweep",
    "fit": "restransfer.recipe.fit",
    "lr_find": "restransfer.training.lr_find",
    "evaluate": "restransfer.recipe.evaluate",
    "interpret": "restransfer.recipe.evaluate",
    "predict": "restransfer.recipe.predict",
    "demo": "restransfer.recipe.demo",
    "gradient_norms": "restransfer.diagnostics.gradients",
    "linear_probe": "restransfer.diagnostics.probe",
    "compare_norms": "restransfer.diagnostics.normalization",
    "plot_curves": "restransfer.diagnostics.curves",
    "export_run": "restransfer.recipe.export_run",
    "export_model": "restransfer.export",
}


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["ConfigError", "DataError", "RestransferError", "WeightsError", *_LAZY]
