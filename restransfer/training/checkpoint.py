"""Resumable checkpoints: weights, optimizer state and the training state, checked on reload.

Every file is written atomically (``restransfer.files.atomic_write``), so a crash leaves the
old file or the new one, never half of one. ``state.json`` is replaced last and names the
checkpoint that belongs to it, so it never points at files that are not complete.

Files can still be damaged after the fact (a full disk under another tool, a partial copy or
sync of a run folder, a hand edit), so each epoch's state records the size and SHA-256 of its
weights and optimizer files, and the two newest epochs are kept
(``restransfer.checkpoint_files.find_resumable`` takes the newest intact one).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np

from restransfer.checkpoint_files import (
    BEST,
    GENERATION,
    KEEP,
    LEGACY_BEST,
    STATE,
    WEIGHTS,
    fingerprint,
    weights_name,
)
from restransfer.errors import TrainingError
from restransfer.files import atomic_write, write_json

# The files' names and their reading without Keras are in ``restransfer.checkpoint_files``.
__all__ = ["BEST", "STATE", "save_checkpoint", "save_best", "restore_best", "save_weights", "load_weights",
           "restore_weights", "restore_optimizer"]


def save_checkpoint(model: keras.Model, folder: Path, state: dict,
                    optimizer: keras.optimizers.Optimizer | None = None) -> None:
    """Save weights and optimizer state under a name for this epoch, then point ``state`` at it.

    The state (with the files' sizes and hashes) is written twice: beside the epoch's files
    (``last-epochNNNN.state.json``, what a fallback reads) and as ``state.json`` (the newest).
    Checkpoints older than the ``KEEP`` newest epochs are deleted. ``optimizer`` defaults to
    ``model.optimizer``; a phase that trains a model over some of ``model``'s layers (the
    feature cache's suffix) passes that model's: it holds the same variables' slots in the
    same order.
    """
    folder = Path(folder)
    name = f"last-epoch{state['epoch']:04d}"
    weights = folder / f"{name}{WEIGHTS}"
    atomic_write(weights, lambda tmp: save_weights(model, tmp))
    store: dict = {}
    (optimizer or model.optimizer).save_own_variables(store)
    slots = folder / f"{name}.optimizer.npz"
    atomic_write(slots, lambda tmp: _save_npz(tmp, store))
    record = {**state, "checkpoint": name,
              "files": {path.name: fingerprint(path) for path in (weights, slots)}}
    write_json(folder / f"{name}.state.json", record)
    write_json(folder / STATE, record)
    generations: dict[int, list[Path]] = {}
    for path in folder.glob("last-epoch*"):
        match = GENERATION.match(path.name)
        if match:
            generations.setdefault(int(match.group(2)), []).append(path)
    for epoch in sorted(generations)[:-KEEP]:
        if epoch != state["epoch"]:
            for path in generations[epoch]:
                path.unlink(missing_ok=True)


def save_best(model: keras.Model, folder: Path) -> None:
    """Write ``model``'s weights as the kept epoch's (``BEST``), atomically."""
    atomic_write(Path(folder) / BEST, lambda tmp: save_weights(model, tmp))


def restore_best(model: keras.Model, folder: Path) -> None:
    """Load the kept epoch's weights into ``model`` (a run of an earlier version: its .weights.h5)."""
    path = Path(folder) / BEST
    if path.exists() or not (Path(folder) / LEGACY_BEST).exists():
        load_weights(model, path)
        return
    with warnings.catch_warnings():
        # The legacy file also holds the optimizer of the phase that wrote it; only the weights matter.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(Path(folder) / LEGACY_BEST)


def save_weights(model: keras.Model, path: Path) -> None:
    """Write every variable of ``model`` (trainable or not) by position, with its path, to an .npz."""
    variables = model.weights
    arrays = {f"{i:04d}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(variables)}
    _save_npz(path, {"paths": np.array([v.path for v in variables]), **arrays})


def load_weights(model: keras.Model, path: Path) -> None:
    """Assign the variables `save_weights` wrote to the same model's variables.

    Raises:
        TrainingError: the file holds another model's variables (other paths or shapes).
    """
    path = Path(path)
    variables = model.weights
    with np.load(path, allow_pickle=False) as data:
        paths = [str(p) for p in data["paths"]]
        expected = [v.path for v in variables]
        if paths != expected:
            extra = sorted(set(paths) - set(expected))[:3]
            missing = sorted(set(expected) - set(paths))[:3]
            raise TrainingError(f"{path} holds the weights of another model ({len(paths)} variables, the model has "
                                f"{len(expected)}; not in the model: {extra}, not in the file: {missing}). Resume "
                                "with the recipe that started the run, or train again with --force.")
        values = [data[f"{i:04d}"] for i in range(len(variables))]
    for variable, value in zip(variables, values):
        if tuple(value.shape) != tuple(variable.shape):
            raise TrainingError(f"{path}: variable {variable.path} has shape {tuple(value.shape)} in the file and "
                                f"{tuple(variable.shape)} in the model. Resume with the recipe that started the run, "
                                "or train again with --force.")
        variable.assign(value)


def _save_npz(path: Path, store: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **store)


def restore_weights(model: keras.Model, folder: Path, state: dict) -> None:
    """Load the weights of ``state``'s checkpoint into ``model``."""
    path = Path(folder) / weights_name(state)
    if path.suffix == ".h5":
        model.load_weights(path)
    else:
        load_weights(model, path)


def restore_optimizer(model: keras.Model, folder: Path, state: dict) -> None:
    """Build the compiled model's optimizer and load its saved variables (moments, step)."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    with np.load(Path(folder) / f"{state['checkpoint']}.optimizer.npz", allow_pickle=False) as data:
        store = {key: data[key] for key in data.files}
    optimizer.load_own_variables(store)
