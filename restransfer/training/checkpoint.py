"""Resumable checkpoints: weights, optimizer state and the training state, checked on reload.

Every file is written atomically (``restransfer.files.atomic_write``), so a crash leaves the
old file or the new one, never half of one. ``state.json`` is replaced last and names the
checkpoint that belongs to it, so it never points at files that are not complete.

Files can still be damaged after the fact (a full disk under another tool, a partial copy or
sync of a run folder, a hand edit), so each epoch's state records the size and SHA-256 of its
weights and optimizer files, and the two newest epochs are kept. `find_resumable` takes the
newest epoch whose files are intact and says what it skipped; a resume then goes on from the
previous epoch instead of failing.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import keras
import numpy as np

from restransfer.errors import TrainingError
from restransfer.files import atomic_write, read_json, remove_temporaries, sha256_file, write_json, write_text

__all__ = ["BEST", "STATE", "KEEP", "WEIGHTS", "atomic_write", "write_text", "write_json", "read_json",
           "save_checkpoint", "save_weights", "load_weights", "find_resumable", "load_state", "restore_weights",
           "restore_optimizer"]

STATE = "state.json"
BEST = "best.weights.h5"  # Keras' own format: ``model.load_weights`` reads it without restransfer
# An epoch's weights, for resuming: every variable by position with its path. Much faster to
# write than Keras' .weights.h5 for a small model (it walks the object graph on every save),
# which matters when epochs take a second.
WEIGHTS = ".weights.npz"
# Epochs whose checkpoints are kept: the newest, and one to fall back to when it is damaged.
KEEP = 2
_GENERATION = re.compile(r"^(last-epoch(\d+))\.")


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
              "files": {path.name: _fingerprint(path) for path in (weights, slots)}}
    write_json(folder / f"{name}.state.json", record)
    write_json(folder / STATE, record)
    generations: dict[int, list[Path]] = {}
    for path in folder.glob("last-epoch*"):
        match = _GENERATION.match(path.name)
        if match:
            generations.setdefault(int(match.group(2)), []).append(path)
    for epoch in sorted(generations)[:-KEEP]:
        if epoch != state["epoch"]:
            for path in generations[epoch]:
                path.unlink(missing_ok=True)


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


def _weights_name(state: dict) -> str:
    """The weights file of ``state``'s checkpoint (.weights.h5 where an earlier version recorded one)."""
    name, recorded = state["checkpoint"], state.get("files")
    if isinstance(recorded, dict) and f"{name}.weights.h5" in recorded:
        return f"{name}.weights.h5"
    return f"{name}{WEIGHTS}"


def _save_npz(path: Path, store: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **store)


def _fingerprint(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def find_resumable(folder: Path) -> tuple[dict | None, list[str]]:
    """The newest intact training state, and one line per damaged checkpoint skipped on the way.

    Returns ``(None, [])`` when no epoch finished yet, and ``(None, notes)`` when checkpoints
    exist but none is intact (training starts again at epoch 1). Temporary files left by an
    interrupted save are deleted.
    """
    folder = Path(folder)
    remove_temporaries([folder])
    notes: list[str] = []
    tried: set[str] = set()
    candidates = [folder / STATE] + sorted(folder.glob("last-epoch*.state.json"), reverse=True)
    for path in candidates:
        if not path.exists():
            continue
        try:
            state = read_json(path)
            if not isinstance(state, dict) or not isinstance(state.get("checkpoint"), str) \
                    or not isinstance(state.get("epoch"), int):
                raise ValueError("it does not hold a training state")
        except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError too
            notes.append(f"{path.name} is damaged ({_reason(error)})")
            continue
        if state["checkpoint"] in tried:
            continue
        tried.add(state["checkpoint"])
        damage = _damage(folder, state)
        if damage is None:
            if notes:
                notes.append(f"resuming from the intact checkpoint of epoch {state['epoch']}")
            return state, notes
        notes.append(f"the checkpoint of epoch {state['epoch']} is damaged: {damage}")
    if notes:
        notes.append("no intact checkpoint is left; training starts again at epoch 1")
    return None, notes


def load_state(folder: Path) -> dict | None:
    """The last intact training state, or None when no epoch finished (or none is intact)."""
    return find_resumable(folder)[0]


def _reason(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:120]


def _damage(folder: Path, state: dict) -> str | None:
    """Why the files of ``state``'s checkpoint cannot be resumed from, or None."""
    name = state["checkpoint"]
    if not re.fullmatch(r"last-epoch\d+", name):
        return f"it names an unexpected checkpoint {name[:60]!r}"
    files = [folder / _weights_name(state), folder / f"{name}.optimizer.npz"]
    recorded = state.get("files")
    for path in files:
        if not path.is_file():
            return f"{path.name} is missing"
        if isinstance(recorded, dict) and isinstance(recorded.get(path.name), dict):
            expected = recorded[path.name]
            size = path.stat().st_size
            if size != expected.get("bytes"):
                return f"{path.name} has {size:,} bytes, {expected.get('bytes'):,} were written"
            if _fingerprint(path)["sha256"] != expected.get("sha256"):
                return f"{path.name} does not have the content that was written (SHA-256 differs)"
        else:  # written before fingerprints were recorded: check that the files open
            problem = _unreadable(path)
            if problem:
                return f"{path.name} cannot be read ({problem})"
    return None


def _unreadable(path: Path) -> str | None:
    try:
        if path.name.endswith(".h5"):
            import h5py

            with h5py.File(path, "r"):
                pass
        else:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                if bad is not None:
                    return f"member {bad} is corrupt"
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        return _reason(error)
    return None


def restore_weights(model: keras.Model, folder: Path, state: dict) -> None:
    """Load the weights of ``state``'s checkpoint into ``model``."""
    path = Path(folder) / _weights_name(state)
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
