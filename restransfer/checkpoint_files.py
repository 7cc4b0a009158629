"""The checkpoint files of a run folder and their reading, without Keras.

A run's ``checkpoints/`` folder holds, per finished epoch, ``last-epochNNNN.weights.npz`` (every
variable by position), ``last-epochNNNN.optimizer.npz`` and ``last-epochNNNN.state.json`` (the
training state with each file's size and SHA-256); ``state.json`` is the newest state, written
last; ``best.weights.npz`` holds the kept epoch's weights. ``restransfer.training.checkpoint``
writes and restores them with Keras; finding which epoch a run can resume from needs no Keras,
so the run folder (``restransfer.runs``) reads them here.

Files can be damaged after the fact (a full disk under another tool, a partial copy or sync of
a run folder, a hand edit), so `find_resumable` takes the newest epoch whose files are intact
and says what it skipped; a resume then goes on from the previous epoch instead of failing.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from restransfer.files import read_json, remove_temporaries, sha256_file

STATE = "state.json"
BEST = "best.weights.npz"
# What runs of earlier versions wrote instead (Keras' .weights.h5). It is no longer written: h5py
# reports a full disk only when its file object is freed, by crashing the process, after
# save_weights has returned as if it had succeeded.
LEGACY_BEST = "best.weights.h5"
# An epoch's weights, for resuming: every variable by position with its path. Much faster to
# write than Keras' .weights.h5 for a small model (it walks the object graph on every save),
# which matters when epochs take a second.
WEIGHTS = ".weights.npz"
# Epochs whose checkpoints are kept: the newest, and one to fall back to when it is damaged.
KEEP = 2
GENERATION = re.compile(r"^(last-epoch(\d+))\.")


def weights_name(state: dict) -> str:
    """The weights file of ``state``'s checkpoint (.weights.h5 where an earlier version recorded one)."""
    name, recorded = state["checkpoint"], state.get("files")
    if isinstance(recorded, dict) and f"{name}.weights.h5" in recorded:
        return f"{name}.weights.h5"
    return f"{name}{WEIGHTS}"


def fingerprint(path: Path) -> dict:
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
    files = [folder / weights_name(state), folder / f"{name}.optimizer.npz"]
    recorded = state.get("files")
    for path in files:
        if not path.is_file():
            return f"{path.name} is missing"
        if isinstance(recorded, dict) and isinstance(recorded.get(path.name), dict):
            expected = recorded[path.name]
            size = path.stat().st_size
            if size != expected.get("bytes"):
                return f"{path.name} has {size:,} bytes, {expected.get('bytes'):,} were written"
            if fingerprint(path)["sha256"] != expected.get("sha256"):
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


__all__ = ["BEST", "GENERATION", "KEEP", "LEGACY_BEST", "STATE", "WEIGHTS", "find_resumable", "fingerprint", "load_state",
           "weights_name"]
