"""The run folder: its one owner. Layout, status, the decision to start, resume or refuse.

A low floor without Keras: it imports nothing of restransfer above ``errors``, the file helpers
and the checkpoint files' format, so weight loading, export, evaluation, the engine and the CLI's
quick commands all read run folders through it (``restransfer.models.loading`` loads its model).

```
RUN/
  recipe.yaml  run.json  class_names.json  model.keras  train.log  thresholds.json (multi-label)
  checkpoints/ (state.json, last-epochNNNN.*, best.weights.npz, phase_reports.json)
  history.csv  metrics.json  logs/ (TensorBoard)  plots/*.png
```
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restransfer.checkpoint_files import find_resumable, load_state
from restransfer.errors import ConfigError, RestransferError, as_sentence, short_repr
from restransfer.files import (
    FileReadError,
    FolderLock,
    read_json,
    read_text,
    regular_file_problem,
    remove_temporaries,
    write_json,
    write_text,
)

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
NEW, RESTART, RESUME = "new", "restart", "resume"
LOCK = ".lock"
# A resolved recipe is written by restransfer; recipes it reads are at most 1 MiB (yaml_io).
MAX_RECIPE_BYTES = 1 << 20
# Everything a run writes; --force deletes these and nothing else. Files at the top level (patterns):
RUN_FILES = ("recipe.yaml", "run.json", "class_names.json", "thresholds.json", "model.keras", "train.log",
             "history.csv", "metrics.json", "evaluation*.json", "data_skipped.json", "data_dropped.json", "data_report.json",
             "report.html", LOCK)
# Folders, with what a run writes inside them (glob patterns of paths below the folder). An
# ``export/`` subfolder is a run's when it holds export.json (written last, after verification).
RUN_FOLDERS = {
    "checkpoints": ("state.json", "best.weights.npz", "best.weights.h5", "last-epoch*", "phase_reports.json"),
    "logs": ("train", "validation", "train/events.out.tfevents.*", "validation/events.out.tfevents.*"),
    "plots": ("*.png", "*.csv"),
    "cache": ("train-*", "val-*", "test-*"),
    "export": (),
}


class RunInUseError(RestransferError):
    """Another process is training (or exporting) in this run folder right now."""


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
    notes: tuple[str, ...] = ()

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
        damaged = (f" Damaged checkpoints were skipped: {'; '.join(self.notes)}." if self.notes else "")
        return self._describe(folder, num_phases) + damaged

    def _describe(self, folder: RunFolder, num_phases: int) -> str:
        if self.kind == RESUME:
            return (f"Resuming {folder.path} after epoch {self.state['epoch']} "
                    f"(phase {self.state['phase'] + 1}/{num_phases}).")
        if self.kind == RESTART:
            return f"Resuming {folder.path}: no epoch had finished, starting at epoch 1."
        return f"New run in {folder.path}."


def unreadable(path: Path, error: FileReadError) -> ConfigError:
    """The message for a run-folder file that cannot be read as data (a device, a FIFO, a
    folder, too large): it is there, so "missing" would mislead."""
    return ConfigError(f"{path} cannot be read: {error.reason}. It is not what restransfer wrote "
                       "there; restore the file (or train the run again).")


def start_from(state: dict | None, notes: tuple[str, ...] = ()) -> Start:
    """``restart`` without a checkpoint state, else ``resume`` after it."""
    return Start(RESUME, state, tuple(notes)) if state else Start(RESTART, notes=tuple(notes))


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
        """``run.json``, or None when there is none; `ConfigError` when it is damaged."""
        path = self.path / "run.json"
        if not os.path.lexists(path):
            return None
        info = self._read_json(path)
        if not isinstance(info, dict):
            raise ConfigError(f"{path} is damaged: it holds {short_repr(info)}, not the run's record.")
        image_size = info.get("image_size")
        if image_size is not None and not (
                isinstance(image_size, list) and len(image_size) == 2
                and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 16384 for s in image_size)):
            raise ConfigError(f"{path} is damaged: image_size is {short_repr(image_size)}, not [height, width] "
                              "in pixels. Restore the file or train the run again.")
        return info

    def class_names(self) -> list[str]:
        path = self.path / "class_names.json"
        if not os.path.lexists(path):
            raise ConfigError(f"{self.path} has no class_names.json; is it a restransfer run folder?")
        names = self._read_json(path)
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise ConfigError(f"{path} is damaged: it holds {short_repr(names)}, not a list of class names.")
        return names

    def thresholds(self) -> dict[str, float] | None:
        """A multi-label run's decision threshold per label (``thresholds.json``), None for a run without.

        Checked against ``class_names.json``: one number in [0, 1] per label, in its order.
        """
        path = self.path / "thresholds.json"
        if not os.path.lexists(path):
            return None
        found = self._read_json(path)
        values = found.get("thresholds") if isinstance(found, dict) else None
        names = self.class_names()
        if not (isinstance(values, dict) and list(values) == names and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in values.values())):
            raise ConfigError(f"{path} is damaged: its 'thresholds' must map each of the run's labels {names} (in that "
                              f"order) to a number in [0, 1]; it holds {short_repr(values)}. Restore it or train the "
                              "run again.")
        return {name: float(values[name]) for name in names}

    def check_outputs(self, model) -> list[str]:
        """The class names, checked against the model's number of outputs (a shortened or
        edited ``class_names.json`` would label every prediction wrongly)."""
        names = self.class_names()
        outputs = model.output_shape[-1]
        if outputs != len(names):
            raise ConfigError(f"{self.path / 'class_names.json'} lists {len(names)} classes but the run's "
                              f"model.keras has {outputs} outputs; the file was changed after training. "
                              "Restore it or train the run again.")
        return names

    @staticmethod
    def _read_json(path: Path):
        try:
            return read_json(path)
        except FileReadError as error:
            raise unreadable(path, error) from None
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path} is damaged ({as_sentence(error)[:-1]}); restore it or train the "
                              "run again.") from None

    def read_json(self, name: str):
        """A JSON file of the run folder (``metrics.json``, ``data_skipped.json``), bounded and
        checked: `ConfigError` naming it when it is no regular file or damaged."""
        return self._read_json(self.path / name)

    def read_text(self, name: str) -> str:
        """A text file of the run folder (``train.log``, ``plots/*.csv``), bounded and checked."""
        path = self.path / name
        try:
            return read_text(path)
        except FileReadError as error:
            raise unreadable(path, error) from None
        except ValueError as error:
            raise ConfigError(f"{path} is damaged ({as_sentence(error)[:-1]}); restore it or train the "
                              "run again.") from None

    def recipe_text(self) -> str | None:
        """The stored resolved recipe, or None when there is none."""
        if not os.path.lexists(self.recipe_file):
            return None
        try:
            return read_text(self.recipe_file, MAX_RECIPE_BYTES)
        except FileReadError as error:
            raise unreadable(self.recipe_file, error) from None
        except ValueError as error:
            raise ConfigError(f"{self.recipe_file} is damaged ({as_sentence(error)[:-1]}); restore it "
                              "or train the run again.") from None

    def is_run(self) -> bool:
        return (self.path / "run.json").is_file()

    def require_model(self) -> None:
        """Raise a ``ConfigError`` naming what is missing unless this is a run with a ``model.keras``."""
        if not self.path.is_dir():
            raise ConfigError(f"Run folder {self.path} does not exist (or is not a folder).")
        if not os.path.lexists(self.path / "run.json"):
            raise ConfigError(f"{self.path} is a folder but not a restransfer run folder (no run.json).")
        info = self.info() or {}  # a damaged run.json is named here, before anything is loaded
        if os.path.lexists(self.model_file) and not self.model_file.is_file():
            raise unreadable(self.model_file, FileReadError(
                self.model_file, regular_file_problem(self.model_file) or "not a regular file"))
        if not self.model_file.is_file():
            raise ConfigError(f"Run folder {self.path} has no model.keras (status: {info.get('status')}); "
                              "finish that run first (rerun its train command to resume it).")

    def training_state(self) -> dict | None:
        return load_state(self.checkpoints)

    def resume_point(self) -> Start:
        """Where an unfinished run resumes: its newest intact checkpoint (damaged ones skipped,
        with a note each), or a restart when no epoch finished."""
        state, notes = find_resumable(self.checkpoints)
        return start_from(state, tuple(notes))

    def lock(self) -> FolderLock:
        """Hold the folder's lock for this process (released when it exits, however it exits).

        Raises:
            RunInUseError: another live process holds it.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"Run folder {self.path} is a file, not a folder; nothing was changed. "
                              "Choose a folder path with --out.")
        lock = FolderLock(self.path / LOCK)
        if not lock.acquire():
            raise RunInUseError(
                f"Run folder {self.path} is in use by {lock.describe_holder()}. Two runs writing one folder "
                "would overwrite each other's files: wait for it to finish (or stop it), or choose another "
                "folder with --out.")
        return lock

    def remove_temporaries(self) -> list[Path]:
        """Delete what interrupted atomic writes left (``.tmp-*`` here and in ``checkpoints/``);
        call only while holding the lock."""
        return remove_temporaries([self.path, self.checkpoints])

    # ---------------------------------------------------------------- writing
    def write_info(self, **fields: Any) -> None:
        info = self.info() or {}
        info.update(fields)
        info["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_json(self.path / "run.json", info)

    def write_history(self, rows: list[dict]) -> None:
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path / "history.csv", buffer.getvalue())

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
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"Run folder {self.path} is a file, not a folder; nothing was changed. "
                              "Choose a folder path with --out.")
        if self.path.exists() and any(p.name != LOCK for p in self.path.iterdir()):
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
                return self.resume_point()
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.recipe_file, text)
        return Start(NEW)

    def _clear(self) -> None:
        # Only what a run writes is deleted; a file we do not know, anywhere in the folder, stops --force.
        unknown = self.foreign_files()
        if unknown:
            shown = ", ".join(str(p.relative_to(self.path)) for p in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise ConfigError(f"--force would delete {shown}{more} in {self.path}, which a run does not write; "
                              "nothing was deleted. Move them away or choose another --out.")
        for item in self.path.iterdir():
            if item.name == LOCK:
                continue
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()

    def foreign_files(self) -> list[Path]:
        """Files and folders in the run folder that no run writes: the user's."""
        import fnmatch

        foreign = []
        for item in sorted(self.path.iterdir()):
            is_folder = item.is_dir() and not item.is_symlink()
            if item.name.startswith(".tmp-") or (
                    not is_folder and any(fnmatch.fnmatch(item.name, p) for p in RUN_FILES)):
                continue
            if item.name not in RUN_FOLDERS or not is_folder:
                foreign.append(item)
            elif item.name == "export":
                foreign += [sub for sub in sorted(item.iterdir()) if not sub.name.startswith(".")
                            and not (sub.is_dir() and (sub / "export.json").is_file())]
            else:
                patterns = RUN_FOLDERS[item.name]
                foreign += [sub for sub in sorted(item.rglob("*")) if not sub.name.startswith(".tmp-")
                            and not any(fnmatch.fnmatch(str(sub.relative_to(item)), p) for p in patterns)]
        return foreign


def _first_difference(old: str, new: str) -> str:
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

    from restransfer.yaml_io import parse_yaml

    try:
        a, b = flat(parse_yaml(old) or {}), flat(parse_yaml(new) or {})
    except ConfigError:
        return "the stored recipe.yaml cannot be read"
    for key in list(a) + [k for k in b if k not in a]:
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            return f"{key} was {a.get(key, '<unset>')!r}, now {b.get(key, '<unset>')!r}"
    return "the recipe text differs"


