"""Atomic files and resumable checkpoints: weights, optimizer state and the training state.

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a crash (Ctrl-C, kill -9, a full disk) leaves either the old file or the
new one, never half of one. ``state.json`` is replaced last and names the checkpoint that
belongs to it, so it never points at files that are not complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

STATE = "state.json"
BEST = "best.weights.h5"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path next to ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras requires the ".weights.h5" suffix, so the temporary name keeps the suffixes.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="".join(path.suffixes) or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_checkpoint(model: keras.Model, folder: Path, state: dict) -> None:
    """Save weights and optimizer state under a name for this epoch, then point ``state`` at it."""
    folder = Path(folder)
    name = f"last-epoch{state['epoch']:04d}"
    atomic_write(folder / f"{name}.weights.h5", model.save_weights)
    store: dict = {}
    model.optimizer.save_own_variables(store)
    atomic_write(folder / f"{name}.optimizer.npz", lambda tmp: _save_npz(tmp, store))
    write_json(folder / STATE, {**state, "checkpoint": name})
    for old in folder.glob("last-epoch*"):
        if not old.name.startswith(name + "."):
            old.unlink(missing_ok=True)


def _save_npz(path: Path, store: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **store)


def load_state(folder: Path) -> dict | None:
    """The last complete training state, or None when no epoch finished yet."""
    path = Path(folder) / STATE
    if not path.exists():
        return None
    for tmp in Path(folder).glob(".tmp-*"):
        tmp.unlink(missing_ok=True)
    return read_json(path)


def restore_weights(model: keras.Model, folder: Path, state: dict) -> None:
    model.load_weights(Path(folder) / f"{state['checkpoint']}.weights.h5")


def restore_optimizer(model: keras.Model, folder: Path, state: dict) -> None:
    """Build the compiled model's optimizer and load its saved variables (moments, step)."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    with np.load(Path(folder) / f"{state['checkpoint']}.optimizer.npz") as data:
        store = {key: data[key] for key in data.files}
    optimizer.load_own_variables(store)
