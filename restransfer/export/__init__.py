"""Export a trained model as a SavedModel (serving raw images), a portable .keras file or TFLite.

Every export is checked on reload in a fresh process that cannot import restransfer (see
``restransfer.export.verify``). TensorFlow is imported by the functions, not by this module.

Example:
    >>> from restransfer.export import export_model
    >>> result = export_model(model, "out/flowers", "saved_model", class_names)
    >>> result.verification.passed
    True

A run folder is exported by ``restransfer.export_run`` (``restransfer.recipe.export_run``): it
reads the run's Plan for the image size, resize and data.
"""

from __future__ import annotations

from restransfer.export.formats import FORMATS, QUANTIZATIONS
from restransfer.lazy import lazy_getattr

# Imported on first use, so the CLI and the recipe schema can read FORMATS without NumPy.
_LAZY = {
    "ExportError": "restransfer.export.artifact",
    "ExportResult": "restransfer.export.artifact",
    "export_model": "restransfer.export.model_export",
    "verify_export": "restransfer.export.model_export",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["FORMATS", "QUANTIZATIONS", *_LAZY]
