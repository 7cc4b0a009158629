"""What every export directory holds besides the model: a manifest, sample images, atomic writes.

Layout of an export directory (``RUN/export/<format>`` by default)::

    <the artifact>     saved_model.pb + variables/ + assets/ | model.keras | model*.tflite + labels.txt
    export.json        format, files and sizes, class names, image size, tolerances, versions
    samples/           a few encoded images and the Keras model's probabilities on them
                       (reference.npz), so `export verify` works without the training data
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from restransfer.errors import ConfigError, RestransferError
from restransfer.export.formats import FORMATS, QUANTIZATIONS
from restransfer.files import FileReadError, FolderLock, format_size, read_json, sha256_file

MANIFEST = "export.json"
SAMPLES_DIR = "samples"
REFERENCE = "reference.npz"
# A multi-label export's decision threshold per label, beside the model (SavedModel: in assets/).
THRESHOLDS_FILE = "thresholds.json"
# export.json's key for the SHA-256 of the .keras file the export was made from.
SOURCE_DIGEST = "source_sha256"
# Largest allowed |probability difference| to the Keras model, per numeric precision of the artifact.
# float32 artifacts run the same float32 math in another kernel order; quantised ones do not.
# Full-integer int8 rounds every activation to 256 levels: its bound is loose, and its accuracy on
# the validation images (export.json's "scores") is the number to judge it by.
TOLERANCES = {"float32": 1e-4, "float16": 2e-2, "dynamic": 1e-1, "int8": 2.5e-1}


class ExportError(RestransferError):
    """An export cannot be written, or an exported model does not reproduce the Keras model."""


@dataclass
class ExportResult:
    """What ``export_model`` / ``export_run`` wrote.

    Attributes:
        format: ``"saved_model"``, ``"keras"`` or ``"tflite"``.
        path: the export directory.
        files: artifact file (relative to ``path``) -> size in bytes.
        verification: the ``VerifyReport`` when verification ran, else ``None``.
    """

    format: str
    path: Path
    files: dict[str, int] = field(default_factory=dict)
    verification: object | None = None

    def __str__(self) -> str:
        lines = [f"exported {self.format} to {self.path}"]
        lines += [f"  {name:<28} {format_size(size):>10}" for name, size in self.files.items()]
        if self.verification is not None:
            lines.append(str(self.verification))
        return "\n".join(lines)


def check_format(format: str, quantize: str | None = None) -> None:
    if format not in FORMATS:
        raise ConfigError(f"Unknown export format '{format}'. Choose one of {list(FORMATS)}.")
    if quantize is not None and (format != "tflite" or quantize not in QUANTIZATIONS):
        raise ConfigError(
            f"quantize={quantize!r} is not available for format '{format}'. Quantisation applies to "
            f"TFLite only, with one of {list(QUANTIZATIONS)}."
        )


def check_target(out: str | os.PathLike) -> Path:
    """The absolute export path; ExportError when it is a file or a non-empty directory."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise ExportError(f"Export target '{out}' is a file. Give a directory path with --out.")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(
            f"Export target '{out}' already exists and is not empty; nothing was overwritten. "
            "Remove it or choose another directory with --out."
        )
    return out


@contextlib.contextmanager
def staged_directory(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging directory that becomes ``out`` only if the block succeeds.

    ``out`` must not exist or be an empty directory: an export never overwrites files. A failed
    export leaves nothing behind; one killed on the way (``kill -9``, a power cut) leaves a
    staging directory ``.<name>.partial-*``, which the next export to ``out`` deletes. Each
    staging directory has a lock file beside it, held while its export runs, so a concurrent
    export to the same target keeps its own.
    """
    out = check_target(out)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        stem = f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
        lock = FolderLock(parent / f"{stem}.lock")
        lock.acquire()
        staging = parent / stem
        staging.mkdir()
    except OSError as error:
        raise ExportError(
            f"Cannot create the export directory '{out}': {error.strerror or error}. "
            "Choose a writable location with --out."
        ) from None
    try:
        yield staging
        try:
            if out.is_dir():
                out.rmdir()
            staging.rename(out)
        except OSError:  # another export to the same target landed while this one ran
            check_target(out)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        lock.release(remove=True)


def remove_stale_staging(out: Path) -> list[Path]:
    """Delete staging directories of exports to ``out`` whose process is gone; return them."""
    removed = []
    for lock_path in out.parent.glob(f".{glob.escape(out.name)}.partial-*.lock"):
        lock = FolderLock(lock_path)
        if not lock.acquire():
            continue  # an export to the same target is running
        staging = lock_path.with_suffix("")
        shutil.rmtree(staging, ignore_errors=True)
        lock.release(remove=True)
        removed.append(staging)
    # Left by versions that wrote no lock file: stale once nothing has touched them for an hour.
    for staging in out.parent.glob(f".{glob.escape(out.name)}.partial-*"):
        if staging.is_dir() and not staging.with_name(staging.name + ".lock").exists() \
                and time.time() - staging.stat().st_mtime > 3600:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def write_manifest(directory: Path, manifest: dict) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(directory: str | os.PathLike) -> dict:
    """Read ``export.json``; a clear error when ``directory`` is not a restransfer export."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not os.path.lexists(path):
        hint = (" It is a run folder: export it first with `restransfer export RUN --format ...`."
                if (directory / "run.json").is_file() else "")
        raise ExportError(f"'{directory}' is not a restransfer export directory (no {MANIFEST}).{hint}")
    try:
        manifest = read_json(path)
    except FileReadError as error:
        raise ExportError(f"'{path}' cannot be read: {error.reason}. Re-export the model.") from None
    except ValueError as error:
        raise ExportError(f"'{path}' is not valid JSON ({error}); re-export the model.") from None
    if not isinstance(manifest, dict):
        raise ExportError(f"'{path}' holds a JSON {type(manifest).__name__}, not an export's "
                          "manifest; re-export the model.")
    return manifest


def made_from(directory: str | os.PathLike, model_file: str | os.PathLike) -> bool:
    """Whether the export in ``directory`` was made from ``model_file`` as it is now (by digest).

    False for an export without a readable manifest or digest (made by an older version): it
    cannot be proven to belong to the model.
    """
    try:
        recorded = read_manifest(directory).get(SOURCE_DIGEST)
        return isinstance(recorded, str) and recorded == sha256_file(model_file)
    except (ExportError, OSError):
        return False


def file_sizes(directory: Path, names: Sequence[str]) -> dict[str, int]:
    sizes = {}
    for name in names:
        path = directory / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        sizes[name] = sum(p.stat().st_size for p in files)
    return sizes


@dataclass
class Samples:
    """Encoded images stored with an export, and the Keras model's probabilities on them."""

    files: list[Path]
    reference: np.ndarray | None = None


def write_samples(directory: Path, encoded: Sequence[tuple[str, bytes]]) -> list[str]:
    """Store ``(suffix, bytes)`` images under ``samples/``; returns their relative paths."""
    folder = directory / SAMPLES_DIR
    folder.mkdir()
    names = []
    for index, (suffix, contents) in enumerate(encoded):
        name = f"sample_{index:03d}{suffix}"
        (folder / name).write_bytes(contents)
        names.append(f"{SAMPLES_DIR}/{name}")
    return names


def write_reference(directory: Path, probabilities: np.ndarray) -> None:
    """Store the Keras model's probabilities on the samples, for verification without it."""
    np.savez(directory / SAMPLES_DIR / REFERENCE, probabilities=np.asarray(probabilities, np.float32))


def read_samples(directory: Path, manifest: dict) -> Samples:
    files = [directory / name for name in manifest.get("samples", [])]
    reference_path = directory / SAMPLES_DIR / REFERENCE
    reference = None
    if reference_path.is_file():
        with np.load(reference_path, allow_pickle=False) as data:
            reference = data["probabilities"]
    return Samples(files=files, reference=reference)


def call_model(model, images):
    """``model(images)`` at inference, passing the input in the structure the model was built with.

    Models built as ``keras.Model([input], [output])`` (e.g. by ``replace_head``) expect lists;
    passing a bare tensor works but makes Keras warn on every call.
    """
    outputs = model([images] if isinstance(model.input, list) else images, training=False)
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def write_thresholds(path: Path, class_names: Sequence[str], thresholds: Sequence[float]) -> None:
    """A multi-label export's ``thresholds.json``: ``{"thresholds": {label: t}}``, readable without restransfer."""
    path.write_text(json.dumps({"thresholds": {str(n): float(t) for n, t in zip(class_names, thresholds)},
                                "rule": "a label is present when its probability >= its threshold"}, indent=2) + "\n")
