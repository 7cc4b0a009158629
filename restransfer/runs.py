"""The run folder: its one owner. Layout, status, the decision to start, resume or refuse, and
the one place a run's ``model.keras`` is loaded.

A low floor: it imports nothing of restransfer above ``errors`` and the atomic file helpers, so
weight loading, export, evaluation and the engine all read run folders through it.

```
RUN/
  recipe.yaml  run.json  class_names.json  model.keras  train.log
  checkpoints/ (state.json, last-epochNNNN.*, best.weights.h5)
  history.csv  metrics.json  logs/ (TensorBoard)  plots/*.png
```
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restransfer.errors import ConfigError
from restransfer.training import checkpoint

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
NEW, RESTART, RESUME = "new", "restart", "resume"
# Everything a run writes at its top level; --force deletes these and nothing else.
RUN_FILES = ("recipe.yaml", "run.json", "class_names.json", "model.keras", "train.log", "history.csv",
             "metrics.json", "evaluation.json", "data_skipped.json", "checkpoints", "logs", "plots",
             "export", "cache", "data_report.json")


@dataclass(frozen=True)
class Start:
    """Where a run starts.

    Attributes:
        kind: ``new`` (an empty folder), ``restart`` (an unfinished run of the same recipe whose
            first epoch never finished) or ``resume`` (after the checkpoint in ``state``).
        state: the checkpoint's ``state.json`` (``resume`` only): epoch, phase, history, best.
    """

    kind: str
    state: dict | None = None

    @property
    def epochs_done(self) -> int:
        return int(self.state["epoch"]) if self.state else 0

    @property
    def history(self) -> list[dict]:
        return list(self.state.get("history", [])) if self.state else []

    @property
    def best(self) -> dict:
        return dict(self.state.get("best", {})) if self.state else {}

    def describe(self, folder: RunFolder, num_phases: int) -> str:
        if self.kind == RESUME:
            return (f"Resuming {folder.path} after epoch {self.state['epoch']} "
                    f"(phase {self.state['phase'] + 1}/{num_phases}).")
        if self.kind == RESTART:
            return f"Resuming {folder.path}: no epoch had finished, starting at epoch 1."
        return f"New run in {folder.path}."


def load_model_file(path: str | Path):
    """A ``.keras`` file in safe mode, uncompiled, restransfer's layers registered: the one loader.

    Raises:
        ConfigError: the file cannot be loaded (safe mode refuses a lambda; a damaged file).
    """
    import keras

    import restransfer.models.layers  # noqa: F401  (registers restransfer's layers for loading)

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises ValueError, TypeError, zipfile errors ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{path} cannot be loaded as a Keras model in safe mode: {reason}. Load only "
                          "files written by restransfer or Keras, without Lambda layers.") from None


def start_from(state: dict | None) -> Start:
    """``restart`` without a checkpoint state, else ``resume`` after it."""
    return Start(RESUME, state) if state else Start(RESTART)


class RunFolder:
    """Paths of a run folder and the small files in it; every write is atomic."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        self.checkpoints = self.path / "checkpoints"
        self.logs = self.path / "logs"
        self.plots = self.path / "plots"
        self.model_file = self.path / "model.keras"
        self.recipe_file = self.path / "recipe.yaml"

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ---------------------------------------------------------------- reading
    def info(self) -> dict | None:
        path = self.path / "run.json"
        return checkpoint.read_json(path) if path.exists() else None

    def class_names(self) -> list[str]:
        path = self.path / "class_names.json"
        if not path.exists():
            raise ConfigError(f"{self.path} has no class_names.json; is it a restransfer run folder?")
        return checkpoint.read_json(path)

    def recipe_text(self) -> str | None:
        return self.recipe_file.read_text(encoding="utf-8") if self.recipe_file.exists() else None

    def is_run(self) -> bool:
        return (self.path / "run.json").is_file()

    def require_model(self) -> None:
        """Raise a ``ConfigError`` naming what is missing unless this is a run with a ``model.keras``."""
        if not self.path.is_dir():
            raise ConfigError(f"Run folder {self.path} does not exist (or is not a folder).")
        if not self.is_run():
            raise ConfigError(f"{self.path} is a folder but not a restransfer run folder (no run.json).")
        if not self.model_file.is_file():
            info = self.info() or {}
            raise ConfigError(f"Run folder {self.path} has no model.keras (status: {info.get('status')}); "
                              "finish that run first (rerun its train command to resume it).")

    def load_model(self):
        """The run's ``model.keras`` in safe mode, uncompiled."""
        self.require_model()
        return load_model_file(self.model_file)

    def training_state(self) -> dict | None:
        return checkpoint.load_state(self.checkpoints)

    # ---------------------------------------------------------------- writing
    def write_info(self, **fields: Any) -> None:
        info = self.info() or {}
        info.update(fields)
        info["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        checkpoint.write_json(self.path / "run.json", info)

    def write_history(self, rows: list[dict]) -> None:
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        checkpoint.write_text(self.path / "history.csv", buffer.getvalue())

    def log(self, line: str) -> None:
        """Append a line to ``train.log`` (what was used: precision, XLA, resume point ...)."""
        with open(self.path / "train.log", "a", encoding="utf-8") as f:
            f.write(time.strftime("%H:%M:%S ") + line + "\n")

    # ---------------------------------------------------------------- lifecycle
    def prepare(self, text: str, *, force: bool = False) -> Start:
        """Create the folder for a new run, or return the state to resume from.

        * missing or empty folder: a new run;
        * an unfinished run (interrupted, killed, or failed) of the same resolved recipe:
          resume from its last complete epoch (``restart`` when no epoch completed);
        * a finished run, or one of another recipe: refuse, unless ``force`` (start over);
        * a non-empty folder that is not a run folder: always refuse (nothing is deleted).

        Args:
            text: the resolved recipe as YAML; an unfinished run resumes only if it is the same.
        """
        if self.path.exists() and any(self.path.iterdir()):
            info = self.info()
            if info is None:
                raise ConfigError(
                    f"Output folder {self.path} exists and is not a restransfer run folder (no run.json); "
                    "nothing was changed. Choose another folder with --out.")
            if force:
                self._clear()
            elif info.get("status") == FINISHED:
                raise ConfigError(
                    f"{self.path} already holds a finished run. Pass --out NEW_FOLDER for a new run, "
                    "or --force to delete it and train again.")
            elif self.recipe_text() != text:
                raise ConfigError(
                    f"{self.path} holds an unfinished run of a different recipe: "
                    f"{_first_difference(self.recipe_text() or '', text)}. Rerun with the same recipe and "
                    "--set values to resume it, pass --out NEW_FOLDER for a new run, or --force to start over.")
            else:
                return start_from(self.training_state())
        self.path.mkdir(parents=True, exist_ok=True)
        checkpoint.write_text(self.recipe_file, text)
        return Start(NEW)

    def _clear(self) -> None:
        # Only what a run writes is deleted; a file we do not know stops --force.
        unknown = [p.name for p in self.path.iterdir() if p.name not in RUN_FILES and not p.name.startswith(".tmp-")]
        if unknown:
            raise ConfigError(f"--force would delete {unknown} in {self.path}, which a run does not write; "
                              "move them away or choose another --out.")
        for item in self.path.iterdir():
            shutil.rmtree(item) if item.is_dir() else item.unlink()


def _first_difference(old: str, new: str) -> str:
    import yaml

    def flat(tree, prefix=""):
        out = {}
        if isinstance(tree, dict):
            for k, v in tree.items():
                out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
        elif isinstance(tree, list) and tree and isinstance(tree[0], dict):
            for i, v in enumerate(tree):
                out.update(flat(v, f"{prefix}[{i}]"))
        else:
            out[prefix] = tree
        return out

    a, b = flat(yaml.safe_load(old) or {}), flat(yaml.safe_load(new) or {})
    for key in list(a) + [k for k in b if k not in a]:
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            return f"{key} was {a.get(key, '<unset>')!r}, now {b.get(key, '<unset>')!r}"
    return "the recipe text differs"


