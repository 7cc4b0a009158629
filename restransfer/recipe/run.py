"""The run folder: layout, status, and the decision to start, resume or refuse.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from restransfer.errors import ConfigError, RestransferError
from restransfer.recipe.load import dump_recipe
from restransfer.recipe.schema import Recipe
from restransfer.training import checkpoint

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
_RUN_FILES = ("run.json", "recipe.yaml")


class TrainingError(RestransferError):
    """Training stopped (non-finite loss, unusable data); the run folder keeps the last good state."""


@dataclass
class Run:
    """A training run: the trained model, its history and metrics, and where it is saved.

    Attributes:
        model: the trained ``keras.Model`` (RGB 0..255 in, float32 probabilities out).
        history: one dict per epoch (also ``history.csv``).
        metrics: ``metrics.json``: per phase and ``final``.
        run_dir: the run folder.
        class_names: label of each output.
        recipe: the validated recipe.
    """

    model: keras.Model
    history: list[dict]
    metrics: dict
    run_dir: Path
    class_names: list[str]
    recipe: Recipe = field(repr=False, default=None)


class RunFolder:
    """Paths of a run folder and the small files in it; every write is atomic."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        self.checkpoints = self.path / "checkpoints"
        self.logs = self.path / "logs"
        self.plots = self.path / "plots"
        self.model_file = self.path / "model.keras"

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
        path = self.path / "recipe.yaml"
        return path.read_text(encoding="utf-8") if path.exists() else None

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
    def prepare(self, recipe: Recipe, *, force: bool = False) -> dict | None:
        """Create the folder for a new run, or return the state to resume from.

        * missing or empty folder: a new run;
        * an unfinished run (interrupted, killed, or failed) of the same resolved recipe:
          resume from its last complete epoch (``None`` when no epoch completed);
        * a finished run, or one of another recipe: refuse, unless ``force`` (start over);
        * a non-empty folder that is not a run folder: always refuse (nothing is deleted).
        """
        text = dump_recipe(recipe)
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
                return self.training_state() or {}
        self.path.mkdir(parents=True, exist_ok=True)
        checkpoint.write_text(self.path / "recipe.yaml", text)
        return None

    def _clear(self) -> None:
        # Only what a run writes is deleted; a file we do not know stops --force.
        known = {"recipe.yaml", "run.json", "class_names.json", "model.keras", "train.log", "history.csv",
                 "metrics.json", "evaluation.json", "data_skipped.json", "checkpoints", "logs", "plots",
                 "export", "cache", "data_report.json"}
        unknown = [p.name for p in self.path.iterdir() if p.name not in known and not p.name.startswith(".tmp-")]
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


