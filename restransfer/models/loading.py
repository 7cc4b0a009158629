"""Loading saved models: the one loader of ``.keras`` files (a run's ``model.keras``, a verified
export), in Keras' safe mode with restransfer's layers registered."""

from __future__ import annotations

from pathlib import Path

import keras

import restransfer.models.layers  # noqa: F401  (registers restransfer's layers for loading)
from restransfer.errors import ConfigError, as_sentence
from restransfer.runs import RunFolder


def load_model_file(path: str | Path) -> keras.Model:
    """A ``.keras`` file in safe mode, uncompiled.

    Raises:
        ConfigError: the file cannot be loaded (safe mode refuses a lambda; a damaged file).
    """
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises ValueError, TypeError, zipfile errors ...
        raise ConfigError(f"{path} cannot be loaded as a Keras model in safe mode: "
                          f"{as_sentence(error or type(error).__name__)} Load only files written by "
                          "restransfer or Keras, without Lambda layers.") from None


def load_run_model(folder: RunFolder) -> keras.Model:
    """A run's ``model.keras`` in safe mode, uncompiled, after checking that the run has one.

    Raises:
        ConfigError: the folder is no finished run, or its model file cannot be loaded.

    Example:
        >>> model = load_run_model(RunFolder("runs/flowers"))
    """
    folder.require_model()
    return load_model_file(folder.model_file)


__all__ = ["load_model_file", "load_run_model"]
