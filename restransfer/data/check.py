"""Dataset checks: decode every file with the training ops and report problems by path.

`check_listing` runs before training (`load_data`) and behind `restransfer data check`:
- fatal (training would fail): unreadable, empty, corrupt or truncated files, files that are
  no image at all, classes without training images;
- warnings: extension that lies about the format (sniffed from magic bytes), CMYK, alpha,
  grayscale, tiny images, duplicate files (same content hash) within or across splits, classes
  with one training image or no validation images, class imbalance.

Results per file are cached by (path, size, mtime) in ``$RESTRANSFER_CACHE_DIR`` (default
``~/.cache/restransfer``), so a second run only stats the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restransfer.data.sources import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, Listing
from restransfer.data.webp import ANIMATED_WEBP_PROBLEM, animated_webp
from restransfer.errors import DataError
from restransfer.files import FileReadError, printable, read_regular_file, regular_file_problem

# Bump when decoding or the checks change, so cached verdicts are recomputed.
CHECK_VERSION = 3
TINY_SIDE = 32
# A class this many times larger than the smallest one is reported as imbalance.
IMBALANCE_RATIO = 5.0
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
_EXTENSION_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF",
                     ".bmp": "BMP", ".webp": "WEBP"}


@dataclass
class Issue:
    """One problem: the file (or class) and what is wrong with it."""

    path: str
    problem: str
    part: str = ""


@dataclass
class DataReport:
    """The outcome of a dataset check; ``ok`` is False when training would fail."""

    class_names: list[str]
    counts: dict[str, list[int]]
    bad: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    ignored: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[Issue] = field(default_factory=list)
    files_checked: int = 0
    files_from_cache: int = 0
    # Multi-label data: `counts` are images holding each label; `images` the images of each part.
    multi_label: bool = False
    images: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.bad

    def usable_listing(self, listing: Listing) -> Listing:
        """The listing without the skipped files (only called once the report is ``ok``)."""
        if not self.skipped:
            return listing
        skipped = {issue.path for issue in self.skipped}
        parts = {}
        for name, part in listing.parts.items():
            if part.paths is None:
                parts[name] = part
                continue
            parts[name] = part.subset(np.array([p not in skipped for p in part.paths], bool))
        return Listing(class_names=listing.class_names, parts=parts, ignored=listing.ignored,
                       roots=listing.roots)

    def skipped_json(self) -> dict[str, Any]:
        return {"skipped": [{"path": i.path, "part": i.part, "problem": i.problem}
                            for i in self.skipped],
                "counts_after_skipping": self.counts}

    def to_json(self) -> dict[str, Any]:
        def issues(items: list[Issue]) -> list[dict[str, str]]:
            return [{"path": i.path, "part": i.part, "problem": i.problem} for i in items]

        return {"ok": self.ok, "class_names": self.class_names, "counts": self.counts,
                "bad": issues(self.bad), "warnings": issues(self.warnings),
                "skipped": issues(self.skipped),
                "ignored": {k: len(v) for k, v in self.ignored.items()},
                "files_checked": self.files_checked,
                **({"multi_label": True, "images": self.images} if self.multi_label else {})}

    def error_message(self, limit: int = 20) -> str:
        """One paragraph for `DataError`: the bad files (first ``limit``) and the fix."""
        listed = "; ".join(f"{i.path}: {i.problem}" for i in self.bad[:limit])
        more = f"; and {len(self.bad) - limit} more" if len(self.bad) > limit else ""
        return (f"{len(self.bad)} problem(s) would stop training: {listed}{more}. Fix or remove "
                "these files (see `restransfer data check`), or set data.skip_bad: true to "
                "train without the unreadable files.")


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file (JPEG, PNG, GIF, BMP, WEBP) or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def _inspect(path: str) -> dict[str, Any]:
    """Everything about one file that needs no TensorFlow: format, mode, size, hash."""
    from PIL import Image

    try:
        data = read_regular_file(path, MAX_IMAGE_BYTES)
    except FileReadError as error:
        return {"error": error.reason}
    info: dict[str, Any] = {"sha1": hashlib.sha1(data).hexdigest()}
    if not data:
        info["error"] = "empty file (0 bytes)"
        return info
    info["format"] = sniff_format(data[:16])
    if info["format"] is None:
        info["error"] = "not an image (unknown format: no JPEG, PNG, GIF, BMP or WebP signature)"
        return info
    if animated_webp(data):
        info["error"] = ANIMATED_WEBP_PROBLEM.removeprefix("it is ")
        return info
    try:
        import io

        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            info["mode"], (info["width"], info["height"]) = image.mode, image.size
            info["alpha"] = image.mode in ("RGBA", "LA", "PA") or (
                image.mode == "P" and "transparency" in image.info)
    except Image.DecompressionBombError as error:  # far above our limit too
        declared = re.search(r"\((\d+) pixels\)", str(error))
        count = f"{int(declared.group(1)):,} pixels" if declared else "more pixels than Pillow opens"
        info["error"] = (f"its header declares {count}, above the limit of {MAX_IMAGE_PIXELS:,}; "
                         "not decoded")
        return info
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for broken headers
        info["pillow"] = str(error)
    if info.get("width", 0) * info.get("height", 0) > MAX_IMAGE_PIXELS:
        info["error"] = (f"its header declares {info['width']}x{info['height']} pixels, above the "
                         f"limit of {MAX_IMAGE_PIXELS:,}; not decoded")
    return info


def file_decode_errors(paths: list[str]) -> dict[str, str]:
    """Decode each file with the training ops; map path -> error for those that fail."""
    import tensorflow as tf

    from restransfer.data.image_ops import decode_image, op_error_reason

    if not paths:
        return {}
    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64), paths))
    shape = tf.autograph.experimental.do_not_convert(
        lambda i, p: (i, tf.shape(decode_image(tf.io.read_file(p)))))
    ds = ds.map(shape, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors().batch(256)
    decoded = np.zeros(len(paths), bool)
    for index, _ in ds.as_numpy_iterator():
        decoded[index] = True
    errors = {}
    for i in np.flatnonzero(~decoded):
        try:
            decode_image(tf.io.read_file(paths[i]))
            errors[paths[i]] = "decoding failed once, then succeeded (file changing?)"
        except tf.errors.OpError as error:
            message = op_error_reason(error)
            errors[paths[i]] = f"corrupt or truncated ({message})"
    return errors


class _Cache:
    """Per-file verdicts keyed by absolute path, valid while size and mtime are unchanged."""

    def __init__(self, key: str):
        root = Path(os.environ.get("RESTRANSFER_CACHE_DIR",
                                   Path.home() / ".cache" / "restransfer"))
        self.file = root / "data_check" / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.json"
        try:
            stored = json.loads(self.file.read_text())
            self.entries = stored["files"] if stored.get("version") == CHECK_VERSION else {}
        except (OSError, ValueError, KeyError, TypeError):
            self.entries = {}

    def get(self, path: str, stat: os.stat_result) -> dict[str, Any] | None:
        entry = self.entries.get(path)
        if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
            return entry["info"]
        return None

    def put(self, path: str, stat: os.stat_result, info: dict[str, Any]) -> None:
        self.entries[path] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "info": info}

    def save(self) -> None:
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": CHECK_VERSION, "files": self.entries}))
            tmp.replace(self.file)
        except OSError:
            pass  # a read-only home only costs the next run a full check


DecodeErrors = Callable[[list[str]], dict[str, str]]


def inspect_files(paths: list[str], decode_errors: DecodeErrors = file_decode_errors
                  ) -> tuple[dict[str, dict[str, Any]], int]:
    """Per-file facts and verdicts (cached); returns ``(path -> info, number from cache)``.

    ``decode_errors`` decodes the files without a cached verdict (absolute paths) and returns
    path -> error for those that fail; `load_data` passes one that also keeps the decoded
    training images.
    """
    paths = sorted({os.path.abspath(p) for p in paths})
    cache = _Cache(os.path.commonpath(paths) if paths else "")
    infos: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, os.stat_result | None]] = []
    from_cache = 0
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as error:
            infos[path] = {"error": f"missing or unreadable ({error.strerror or error})"}
            continue
        problem = regular_file_problem(path, MAX_IMAGE_BYTES, stat)
        if problem:  # never opened: a FIFO blocks, /dev/zero never ends
            infos[path] = {"error": problem}
            continue
        cached = cache.get(path, stat)
        if cached is not None:
            infos[path] = cached
            from_cache += 1
        else:
            todo.append((path, stat))
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        fresh = dict(zip([p for p, _ in todo], pool.map(_inspect, [p for p, _ in todo])))
    errors = decode_errors([p for p, info in fresh.items() if "error" not in info])
    for path, stat in todo:
        info = fresh[path]
        if path in errors:
            info["error"] = errors[path]
        infos[path] = info
        cache.put(path, stat, info)
    if todo:
        cache.save()
    return infos, from_cache


def _file_warnings(path: str, info: dict[str, Any]) -> list[str]:
    problems = []
    claimed = _EXTENSION_FORMAT.get(os.path.splitext(path)[1].lower())
    if claimed and info.get("format") and claimed != info["format"]:
        problems.append(f"extension says {claimed} but the file is {info['format']}")
    mode = info.get("mode")
    if mode == "CMYK":
        problems.append("CMYK JPEG (converted to RGB)")
    if info.get("alpha"):
        problems.append("has an alpha channel (composited over white)")
    if mode in ("L", "LA", "1", "I", "I;16", "F"):
        problems.append("grayscale (channel repeated to RGB)")
    if "width" in info and min(info["width"], info["height"]) < TINY_SIDE:
        problems.append(f"tiny image ({info['width']}x{info['height']} px)")
    return problems


def check_listing(listing: Listing, skip_bad: bool = False,
                  decode_errors: DecodeErrors = file_decode_errors) -> DataReport:
    """Check a listing; raise `DataError` when training would fail (unless ``skip_bad``).

    Args:
        listing: what a source yields.
        skip_bad: leave unreadable files out (recorded in ``report.skipped``) instead of
            raising; problems that are not about single files still raise.
        decode_errors: how files without a cached verdict are decoded (see `inspect_files`).

    Returns:
        The :class:`DataReport`.
    """
    report = inspect_listing(listing, decode_errors)
    files = [issue for issue in report.bad if issue.part != "class"]
    if skip_bad and files:
        skipped = {issue.path for issue in files}
        k = len(listing.class_names)
        report.skipped = files
        report.counts = {
            name: np.bincount(
                [y for p, y in zip(part.paths, part.labels) if p not in skipped]
                if part.paths is not None else part.labels, minlength=k).tolist()
            for name, part in listing.parts.items()}
        report.bad = _class_problems(report.counts, listing.class_names)
    if not report.ok:
        raise DataError(report.error_message())
    return report


def inspect_listing(listing: Listing,
                    decode_errors: DecodeErrors = file_decode_errors) -> DataReport:
    """Build the full report without raising (what `restransfer data check` prints)."""
    counts = listing.counts()
    report = DataReport(class_names=listing.class_names, counts=counts, ignored=listing.ignored,
                        multi_label=listing.multi_label, images={n: len(p) for n, p in listing.parts.items()})
    paths = [p for part in listing.parts.values() for p in (part.paths or [])]
    if paths:
        infos, from_cache = inspect_files(paths, decode_errors)
        report.files_checked, report.files_from_cache = len(infos), from_cache
        owners: dict[str, list[tuple[str, str]]] = {}
        for name, part in listing.parts.items():
            for path in part.paths or []:
                info = infos[os.path.abspath(path)]
                if "error" in info:
                    report.bad.append(Issue(path, info["error"], name))
                    continue
                report.warnings += [Issue(path, w, name) for w in _file_warnings(path, info)]
                owners.setdefault(info["sha1"], []).append((name, path))
        for copies in owners.values():
            if len(copies) > 1:
                parts = sorted({n for n, _ in copies})
                where = "across " + " and ".join(parts) if len(parts) > 1 else f"within {parts[0]}"
                for name, path in copies[1:]:
                    report.warnings.append(Issue(path, f"duplicate of {copies[0][1]} ({where})",
                                                 name))
    if listing.multi_label:
        report.warnings += _label_warnings(listing)
        return report
    report.bad += _class_problems(counts, listing.class_names)
    report.warnings += _class_warnings(counts, listing.class_names)
    return report


def _label_warnings(listing: Listing) -> list[Issue]:
    """A multi-label table's labels never or always present, and its images without any label.

    None stops training: an image may rightly hold no label, but a label never present (or always
    present) in a split has no average precision there and teaches the model nothing.
    """
    issues = []
    for part_name, part in listing.parts.items():
        matrix = part.labels
        for name, present in zip(listing.class_names, matrix.sum(axis=0).tolist()):
            if present == 0:
                issues.append(Issue(name, f"label never present in {part_name}: its average precision there is "
                                          "undefined", "label"))
            elif present == len(matrix):
                issues.append(Issue(name, f"label present on every {part_name} image: nothing to tell apart",
                                    "label"))
        empty = int((matrix.sum(axis=1) == 0).sum())
        if empty:
            issues.append(Issue(part_name, f"{empty} of {len(matrix)} images have no label", "label"))
    return issues


def _class_problems(counts: dict[str, list[int]], class_names: list[str]) -> list[Issue]:
    return [Issue(name, "class has no training images; add images or remove the class",
                  "class")
            for name, n in zip(class_names, counts.get("train", [])) if n == 0]


def _class_warnings(counts: dict[str, list[int]], class_names: list[str]) -> list[Issue]:
    issues = []
    train = counts.get("train", [])
    for name, n in zip(class_names, train):
        if n == 1:
            issues.append(Issue(name, "class has a single training image", "class"))
    for name, n in zip(class_names, counts.get("val", [])):
        if n == 0:
            issues.append(Issue(name, "class has no validation images; its validation "
                                      "accuracy cannot be measured", "class"))
    nonzero = [n for n in train if n]
    if nonzero and max(nonzero) >= IMBALANCE_RATIO * min(nonzero):
        big, small = class_names[train.index(max(nonzero))], class_names[train.index(min(nonzero))]
        issues.append(Issue("train", f"class imbalance: '{big}' has {max(nonzero)} images, "
                                     f"'{small}' {min(nonzero)}", "class"))
    return issues


def dataset_root(listing: Listing) -> Path | None:
    """The folder every split's files lie under (a CSV's folder), for paths shown relative to it."""
    folders = [str(root.parent if root.suffix.lower() == ".csv" else root) for root in listing.roots.values()]
    if not folders:
        return None
    try:
        return Path(os.path.commonpath(folders))
    except ValueError:  # absolute and relative roots mixed
        return None


def relative_to_root(text: str, root: Path | None) -> str:
    """``text`` with every path under ``root`` written relative to it (``bird/x.jpg``)."""
    if root is None or str(root) in ("", "."):
        return text
    for form in {str(root), os.path.abspath(root)}:
        text = text.replace(form.rstrip(os.sep) + os.sep, "")
    return text


def render_report(report: DataReport, limit: int = 50, root: Path | None = None):
    """A rich renderable: counts per class and split, then problems and warnings by path.

    With ``root`` (see `dataset_root`) paths are shown relative to it, and a line says so. Long
    paths are never folded inside a cell: print it on a wide console (``restransfer.commands.
    output.console`` gives one when the output is not a terminal) and each path stays one word.
    """
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    def shown(text: str) -> str:
        # Paths, class names and problems come from the user's files: never read as markup, and
        # a line break or an ESC sequence in a name is printed as an escape, not obeyed.
        return escape(printable(relative_to_root(text, root)))

    counts = Table(title="images per label (an image may hold several)" if report.multi_label else "images per class")
    counts.add_column("label" if report.multi_label else "class")
    parts = list(report.counts)
    for part in parts:
        counts.add_column(part, justify="right")
    for i, name in enumerate(report.class_names):
        counts.add_row(shown(name), *(str(report.counts[p][i]) for p in parts))
    if report.multi_label:
        counts.add_row("[bold]images", *(f"[bold]{report.images.get(p, 0)}" for p in parts))
    else:
        counts.add_row("[bold]total", *(f"[bold]{sum(report.counts[p])}" for p in parts))
    renderables: list[Any] = [counts]
    if root is not None and str(root) not in ("", ".") and (report.bad or report.skipped or report.warnings):
        renderables.append(escape(printable(f"paths relative to {root}{os.sep}")))
    for title, items, style in (("problems (training would fail)", report.bad, "red"),
                                ("skipped (skip_bad)", report.skipped, "yellow"),
                                ("warnings", report.warnings, "yellow")):
        if not items:
            continue
        table = Table(title=f"[{style}]{title}: {len(items)}")
        table.add_column("path or class", no_wrap=True)
        table.add_column("split", no_wrap=True)
        table.add_column("problem")
        for issue in items[:limit]:
            table.add_row(shown(issue.path), shown(issue.part), shown(issue.problem))
        if len(items) > limit:
            table.add_row(f"... {len(items) - limit} more", "", "")
        renderables.append(table)
    if report.ignored:
        ignored = ", ".join(f"{len(v)} {k}" for k, v in report.ignored.items())
        renderables.append(f"ignored files: {ignored}")
    verdict = ("[green]OK: training can start" if report.ok
               else f"[red]{len(report.bad)} problem(s): training would fail")
    renderables.append(f"{report.files_checked} files checked "
                       f"({report.files_from_cache} from cache). {verdict}")
    return Group(*renderables)
