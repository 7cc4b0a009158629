"""Sources: list what to load per split (files, in-memory arrays or a TFDS dataset) and the classes.

Nothing here decodes images; `pipeline.py` turns a `Listing` into tf.data datasets and
`check.py` verifies files first. Every split is deterministic given the seed.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restransfer.errors import DataError, OptionError
from restransfer.files import not_utf8, printable, regular_file_problem

# Extensions that `decode_image` reads; anything else in a class folder is ignored and counted.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Image files are read whole; a larger file (or one declaring more pixels) is refused, named.
MAX_IMAGE_BYTES = 256 << 20
# 50 MP (8,660 x 5,773): a camera photo passes; a decoded image takes at most 200 MB (RGBA).
MAX_IMAGE_PIXELS = 50_000_000
MAX_CSV_BYTES = 1 << 30
# Label files hold one class name per line: a name with a line break would shift every label.
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


@dataclass
class Part:
    """One split: labels plus exactly one of file paths, NumPy images or a dataset.

    ``labels`` are integer class indices ``[n]``, or for multi-label data a 0/1 matrix ``[n, labels]``.
    """

    labels: np.ndarray
    paths: list[str] | None = None
    images: np.ndarray | None = None
    dataset: Any = None  # tf.data.Dataset of (uint8 [H, W, 3], int64 label), for TFDS

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> Part:
        """The part restricted to the boolean mask ``keep`` (file and array parts only)."""
        paths = [p for p, k in zip(self.paths, keep) if k] if self.paths is not None else None
        images = self.images[keep] if self.images is not None else None
        return Part(labels=self.labels[keep], paths=paths, images=images)


@dataclass
class Listing:
    """What a source yields: class names and the parts ``train``, ``val`` and maybe ``test``."""

    class_names: list[str]
    parts: dict[str, Part]
    ignored: dict[str, list[str]] = field(default_factory=dict)  # reason -> paths
    roots: dict[str, Path] = field(default_factory=dict)  # part -> folder or CSV file

    @property
    def multi_label(self) -> bool:
        """Whether the labels are a 0/1 matrix (an image may have any set of labels)."""
        return any(part.labels.ndim == 2 for part in self.parts.values())

    def counts(self) -> dict[str, list[int]]:
        """Images per class of each part; for multi-label data, images holding each label."""
        k = len(self.class_names)
        return {name: (part.labels.sum(axis=0).astype(int).tolist() if part.labels.ndim == 2
                       else np.bincount(part.labels, minlength=k).tolist())
                for name, part in self.parts.items()}


def stratified_split(labels: np.ndarray, fraction: float, seed: int,
                     class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` with ``round(fraction * n)`` (at least 1) of each class in val.

    Every class keeps at least one image on each side; a class too small for that is an error
    that names it.
    """
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            raise DataError(
                f"class '{name}' has {len(members)} image(s); validation_split={fraction} needs "
                "at least 2 per class (one to train on, one to validate). Add images, remove "
                "the class folder, or give a separate val_path.")
        members = rng.permutation(members)
        n_val = min(max(1, round(fraction * len(members))), len(members) - 1)
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def held_out_per_class(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A boolean mask holding out ``floor(share * n)`` seeded images of each class (``n`` its images).

    A class of one image keeps it on the other side. The draw is independent of
    `stratified_split`'s with the same seed.

    Example:
        >>> held_out_per_class(np.array([0, 0, 1, 1, 1, 2]), 0.5, seed=0).sum()
        2
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 1])
    held = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held[members[:int(share * len(members))]] = True
    return held


def multi_label_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Training indices of a seeded random split of a 0/1 label matrix, ``round(fraction * n)`` to validation.

    Label sets do not stratify as classes do (scikit-learn's ``train_test_split`` refuses a
    multi-label ``stratify``); a random permutation keeps each label's share in expectation.
    """
    n = len(labels)
    if n < 2:
        raise DataError(f"validation_split needs at least 2 images; the training CSV lists {n}.")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(fraction * n)), n - 1)
    return np.sort(order[n_val:])


# ---------------------------------------------------------------------------------- folders
def scan_folder(root: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Map class folder name -> sorted image paths, and reason -> ignored paths.

    Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) and files without an
    image extension are ignored and reported; class folders may hold subfolders.
    """
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder; it should hold "
                        f"one subfolder per class (e.g. {root}/cat/1.jpg).")
    classes: dict[str, list[str]] = {}
    ignored: dict[str, list[str]] = {"hidden": [], "not an image": []}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            ignored["hidden"].append(entry.path)
            continue
        try:
            is_dir = entry.is_dir()
        except OSError as error:  # a symbolic link loop (ELOOP), a vanished or unreadable entry
            raise DataError(f"{printable(entry.path)} in the data folder cannot be read: {error.strerror or error}. "
                            "Remove it, or make it a real class folder.") from None
        if is_dir and not_utf8(entry.name):
            raise DataError(f"The class folder name {printable(entry.name)!r} in {printable(str(root))} is not UTF-8 "
                            "text; class names are written to run folders and exports. Rename the folder.")
        if not is_dir:
            reason = ("outside a class folder" if entry.name.lower().endswith(IMAGE_EXTENSIONS)
                      else "not an image")
            ignored.setdefault(reason, []).append(entry.path)
            continue
        files = []
        for folder, dirs, names in os.walk(entry.path):
            ignored["hidden"].extend(os.path.join(folder, d) for d in dirs if d.startswith("."))
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                path = os.path.join(folder, name)
                if name.startswith("."):
                    ignored["hidden"].append(path)
                elif not_utf8(path):
                    ignored.setdefault("name not UTF-8 (rename it)", []).append(path)
                elif not name.lower().endswith(IMAGE_EXTENSIONS):
                    ignored["not an image"].append(path)
                else:
                    files.append(path)
        classes[entry.name] = files
    if not classes:
        raise DataError(f"data folder {root} has no class subfolders; put each class's images "
                        f"in its own subfolder, e.g. {root}/cat/1.jpg and {root}/dog/2.jpg.")
    return classes, {k: v for k, v in ignored.items() if v}


def class_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a class name, or None: it must be one line of printable text.

    Exported models list their classes one per line (``assets/class_names.txt``,
    ``labels.txt``); a name holding a line break would shift every label after it.
    """
    if not name.strip():
        return "is empty or only spaces"
    if any(ch in _LINE_BREAKS for ch in name):
        return "holds a line break, which would shift the labels of an exported model"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "holds a control character"
    return None


def check_class_names(names: list[str], where: str) -> list[str]:
    """``names``, or `DataError` naming the first unusable one (see `class_name_problem`)."""
    for name in names:
        problem = class_name_problem(name)
        if problem:
            raise DataError(f"The class name {name!r} from {where} {problem}. Rename it to one "
                            "line of printable text.")
    return names


def _part_from_classes(classes: dict[str, list[str]], class_names: list[str]) -> Part:
    paths, labels = [], []
    for label, name in enumerate(class_names):
        files = classes.get(name, [])
        paths.extend(files)
        labels.extend([label] * len(files))
    return Part(labels=np.array(labels, dtype=np.int64), paths=paths)


def _check_classes(where: str, found: list[str], class_names: list[str]) -> None:
    extra = sorted(set(found) - set(class_names))
    if extra:
        raise DataError(f"{where} has classes that training data lacks: {', '.join(extra)}. "
                        f"Training classes are: {', '.join(class_names)}.")


def folder_listing(path: Path, val_path: Path | None, test_path: Path | None,
                   validation_split: float | None, seed: int) -> Listing:
    """Class-per-subfolder data; val from ``val_path`` or a stratified ``validation_split``."""
    classes, ignored = scan_folder(Path(path))
    class_names = check_class_names(sorted(classes), f"the class folders of {path}")
    # Empty class folders are reported by the check (with everything else), not raised here.
    if len(class_names) < 2:
        raise DataError(f"{path} has one class folder ({class_names[0]}); classification "
                        "needs at least two.")
    train = _part_from_classes(classes, class_names)
    parts, roots = _train_and_split(train, Path(path), validation_split, seed, class_names)
    for name, extra_path in (("val", val_path), ("test", test_path)):
        if extra_path is None:
            continue
        extra_classes, extra_ignored = scan_folder(Path(extra_path))
        _check_classes(f"{name} folder {extra_path}", list(extra_classes), class_names)
        parts[name] = _part_from_classes(extra_classes, class_names)
        roots[name] = Path(extra_path)
        for reason, paths in extra_ignored.items():
            ignored.setdefault(reason, []).extend(paths)
    return Listing(class_names=class_names, parts=parts, ignored=ignored, roots=roots)


def _train_and_split(train: Part, root: Path, validation_split: float | None, seed: int,
                     class_names: list[str]) -> tuple[dict[str, Part], dict[str, Path]]:
    """The training part, and a stratified validation part carved from it when asked."""
    if validation_split is None:
        return {"train": train}, {"train": root}
    if train.labels.ndim == 2:
        train_idx = multi_label_split(train.labels, validation_split, seed)
    else:
        train_idx, _ = stratified_split(train.labels, validation_split, seed, class_names)
    mask = np.zeros(len(train), bool)
    mask[train_idx] = True
    return {"train": train.subset(mask), "val": train.subset(~mask)}, {"train": root, "val": root}


# ---------------------------------------------------------------------------------- CSV
def read_csv(path: Path) -> tuple[list[str], list[str]]:
    """Rows ``path,label`` (an optional header ``path,label``); paths relative to the CSV.

    A header ``path,labels`` makes it a multi-label table: each label cell holds ``;``-separated
    names and may be empty (no label); use `read_labels_csv` for it.
    """
    paths, labels, multi = _read_table(path)
    if multi:
        raise DataError(f"{path} has a 'path,labels' header: a multi-label table. Set task: multi_label in the "
                        "recipe (or rename the column to 'label' if each image has exactly one class).")
    return paths, labels


def read_labels_csv(path: Path) -> tuple[list[str], list[tuple[str, ...]]] | None:
    """A multi-label table's paths and label sets (``path,labels`` header), or None for a ``path,label`` one.

    Example:
        >>> import tempfile, pathlib
        >>> table = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> _ = table.write_text("path,labels\\na.png,dog; car\\nb.png,\\n")
        >>> [labels for _, labels in zip(*read_labels_csv(table))]
        [('car', 'dog'), ()]
    """
    paths, cells, multi = _read_table(path)
    if not multi:
        return None
    sets = []
    for cell in cells:
        names = sorted({name.strip() for name in cell.split(";") if name.strip()})
        sets.append(tuple(names))
    return paths, sets


def _read_table(path: Path) -> tuple[list[str], list[str], bool]:
    base = Path(path).parent
    paths, labels = [], []
    problem = regular_file_problem(path, MAX_CSV_BYTES)
    if problem:
        raise DataError(f"CSV file {path} cannot be read: {problem}.")
    # utf-8-sig: a byte order mark (Excel writes one) is not part of the header's first name.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        try:
            rows = list(csv.reader(handle))
        except UnicodeDecodeError as error:
            raise DataError(f"CSV file {path} is not UTF-8 text (byte {error.start}: "
                            f"{error.object[error.start:error.start + 1]!r}); save it as UTF-8.") from None
    multi = False
    for number, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].startswith("#"):
            continue
        if number == 1 and [c.strip().lower() for c in row[:2]] in (["path", "label"], ["path", "labels"]):
            multi = row[1].strip().lower() == "labels"
            continue
        # A multi-label row may have an empty label cell (an image without any label).
        if len(row) < 2 or not row[0].strip() or not (multi or row[1].strip()):
            raise DataError(f"{path}, line {number}: expected {'path,labels' if multi else 'path,label'}, "
                            f"got {row!r}.")
        if "\0" in row[0] or "\0" in row[1]:
            raise DataError(f"{path}, line {number}: a NUL character (\\x00) in {printable(','.join(row[:2]))!r}; "
                            "no file name or label holds one. Fix that row.")
        file = Path(row[0].strip())
        paths.append(str(file if file.is_absolute() else base / file))
        labels.append(row[1].strip())
    if not paths:
        raise DataError(f"{path} has no {'path,labels' if multi else 'path,label'} rows.")
    return paths, labels, multi


def label_matrix(sets: list[tuple[str, ...]], names: list[str]) -> np.ndarray:
    """The 0/1 matrix ``[images, labels]`` of label sets over the label names ``names``."""
    index = {name: i for i, name in enumerate(names)}
    matrix = np.zeros((len(sets), len(names)), np.int64)
    for row, labels in enumerate(sets):
        matrix[row, [index[name] for name in labels]] = 1
    return matrix


def _multi_label_csv_listing(path: Path, val_path: Path | None, test_path: Path | None,
                             validation_split: float | None, seed: int,
                             table: tuple[list[str], list[tuple[str, ...]]]) -> Listing:
    paths, sets = table
    names = sorted({name for labels in sets for name in labels})
    label_names = check_class_names(names, f"the labels of {path}")
    if not label_names:
        raise DataError(f"{path} lists no label in its 'labels' column; a multi-label table names at least one.")
    train = Part(labels=label_matrix(sets, label_names), paths=paths)
    parts, roots = _train_and_split(train, Path(path), validation_split, seed, label_names)
    for name, extra_path in (("val", val_path), ("test", test_path)):
        if extra_path is None:
            continue
        extra = read_labels_csv(Path(extra_path))
        if extra is None:
            raise DataError(f"The {name} CSV {extra_path} has no 'path,labels' header but the training CSV {path} "
                            "does; give both tables the multi-label header.")
        _check_classes(f"{name} CSV {extra_path}", sorted({n for labels in extra[1] for n in labels}), label_names)
        parts[name] = Part(labels=label_matrix(extra[1], label_names), paths=extra[0])
        roots[name] = Path(extra_path)
    return Listing(class_names=label_names, parts=parts, roots=roots)


def csv_listing(path: Path, val_path: Path | None, test_path: Path | None,
                validation_split: float | None, seed: int) -> Listing:
    """Data from CSV files of ``path,label`` rows; classes are the sorted training labels.

    With a ``path,labels`` header the table is multi-label: the labels are the union of the
    training table's names, sorted, and each part's labels a 0/1 matrix.
    """
    table = read_labels_csv(Path(path))
    if table is not None:
        return _multi_label_csv_listing(path, val_path, test_path, validation_split, seed, table)
    paths, names = read_csv(Path(path))
    class_names = check_class_names(sorted(set(names)), f"the labels of {path}")
    if len(class_names) < 2:
        raise DataError(f"{path} has one label ({class_names[0]}); classification needs two.")
    index = {name: i for i, name in enumerate(class_names)}
    train = Part(labels=np.array([index[n] for n in names], dtype=np.int64), paths=paths)
    parts, roots = _train_and_split(train, Path(path), validation_split, seed, class_names)
    for name, extra_path in (("val", val_path), ("test", test_path)):
        if extra_path is None:
            continue
        extra_paths, extra_names = read_csv(Path(extra_path))
        _check_classes(f"{name} CSV {extra_path}", extra_names, class_names)
        parts[name] = Part(labels=np.array([index[n] for n in extra_names], dtype=np.int64),
                           paths=extra_paths)
        roots[name] = Path(extra_path)
    return Listing(class_names=class_names, parts=parts, roots=roots)


# ---------------------------------------------------------------------------------- digits
def digits_split(classes: list[int] | None, per_class: int | None,
                 val_per_class: int | None) -> list[tuple[int, int, int]]:
    """``(digit, n_train, n_val)`` per class of a digits split; `OptionError` when the data
    cannot give it. Reads only the labels (no images), so ``validate`` runs the same rule."""
    from sklearn.datasets import load_digits

    targets = load_digits().target
    split = []
    for digit in (list(range(10)) if classes is None else list(classes)):
        available = int(np.sum(targets == digit))
        if per_class is None:
            n_val = val_per_class or max(1, round(0.2 * available))
            n_train = available - n_val
        else:
            n_train = per_class
            n_val = available - per_class if val_per_class is None else val_per_class
        if n_train < 1 or n_val < 1 or n_train + n_val > available:
            key = "per_class" if per_class is not None and per_class >= available else "val_per_class"
            raise OptionError(key, (
                f"digit {digit} has {available} images; per_class={per_class} and "
                f"val_per_class={val_per_class} need more (or leave none for validation). "
                "Lower per_class or val_per_class."))
        split.append((digit, n_train, n_val))
    return split


def optical_counts_to_rgb(counts: np.ndarray) -> np.ndarray:
    """8x8 optical-digit counts (0..16, shape ``[..., 8, 8]``) as float32 RGB 0..255."""
    return (np.asarray(counts).astype(np.float32) * (255.0 / 16.0))[..., None].repeat(3, axis=-1)


def digits_listing(classes: list[int] | None, per_class: int | None,
                   val_per_class: int | None, seed: int) -> Listing:
    """scikit-learn's 1,797 8x8 digits as float32 RGB 0..255, split per class with ``seed``.

    For each class in ``classes`` (labelled 0..k-1 in that order), a seeded permutation puts
    the first ``per_class`` images in train and the next ``val_per_class`` (default: all the
    rest) in val.
    """
    from sklearn.datasets import load_digits

    try:
        split = digits_split(classes, per_class, val_per_class)
    except OptionError as error:
        raise DataError(str(error)) from None
    images = optical_counts_to_rgb(load_digits().images)
    parts = {name: Part(labels=labels, images=images[indices])
             for name, (indices, labels) in digits_indices(split, seed).items() if name != "rest"}
    return Listing(class_names=[str(d) for d, _, _ in split], parts=parts)


def digits_indices(split: list[tuple[int, int, int]], seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train" | "val" | "rest": (indices into load_digits(), labels 0..k-1)}`` of a `digits_split`.

    ``rest`` holds the images of the split's classes that neither part uses (held-out data for
    measurements on what a run never saw).
    """
    from sklearn.datasets import load_digits

    target = load_digits().target
    rng = np.random.default_rng(seed)
    out = {name: ([], []) for name in ("train", "val", "rest")}
    for label, (digit, n_train, n_val) in enumerate(split):
        members = rng.permutation(np.flatnonzero(target == digit))
        for name, chosen in (("train", members[:n_train]), ("val", members[n_train:n_train + n_val]),
                             ("rest", members[n_train + n_val:])):
            out[name][0].extend(chosen)
            out[name][1].extend([label] * len(chosen))
    return {name: (np.array(idx, np.int64), np.array(lab, np.int64)) for name, (idx, lab) in out.items()}


# ---------------------------------------------------------------------------------- arrays
def _check_array_part(name: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"x_{name} must be NHWC images with 1 or 3 channels (or NHW grayscale); "
                        f"received shape {x.shape}.")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"x_{name} must hold numbers; received dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1))
        raise DataError(f"x_{name} has NaN or infinite pixels in images {bad[:10].tolist()}"
                        f"{' ...' if len(bad) > 10 else ''}; fix or drop them before training.")
    if len(x) and (x.min() < 0 or x.max() > 255):
        raise DataError(f"x_{name} values must be in 0..255; received {x.min()}..{x.max()}.")
    if np.issubdtype(x.dtype, np.floating) and len(x) and x.max() <= 1.0:
        raise DataError(f"x_{name} looks scaled to 0..1 (max {x.max():.3g}); give 0..255 "
                        "values (multiply by 255): the model normalises its input itself.")
    if y.ndim == 2 and len(y) and not np.isin(y, (0, 1)).all():
        raise DataError(f"y_{name} is 2-D, so it must be a 0/1 label matrix [images, labels] (multi-label); "
                        f"it holds other values, e.g. {y[~np.isin(y, (0, 1))][:3].tolist()}.")
    if y.ndim == 2:
        y = y.astype(np.int64)
    elif y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"y_{name} must be a 1-D array of integer class indices, or a 2-D 0/1 label matrix "
                        f"for multi-label data; received shape {y.shape}, dtype {y.dtype}.")
    if len(x) != len(y):
        raise DataError(f"x_{name} has {len(x)} images but y_{name} has {len(y)} labels.")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x, y.astype(np.int64)


def arrays_listing(x_train: Any, y_train: Any, x_val: Any, y_val: Any,
                   class_names: list[str] | None = None, x_test: Any = None,
                   y_test: Any = None) -> Listing:
    """In-memory NumPy images and integer labels (``class_names`` default to "0", "1", ...)."""
    parts = {}
    for name, x, y in (("train", x_train, y_train), ("val", x_val, y_val),
                       ("test", x_test, y_test)):
        if x is None and y is None and name == "test":
            continue
        images, labels = _check_array_part(name, x, y)
        parts[name] = Part(labels=labels, images=images)
    if any(p.labels.ndim == 2 for p in parts.values()):
        return _multi_label_arrays(parts, class_names)
    num = int(max(p.labels.max(initial=-1) for p in parts.values())) + 1
    if class_names is None:
        class_names = [str(i) for i in range(num)]
    class_names = check_class_names([str(c) for c in class_names], "class_names")
    if num > len(class_names) or min(p.labels.min(initial=0) for p in parts.values()) < 0:
        raise DataError(f"labels must be in 0..{len(class_names) - 1} for the "
                        f"{len(class_names)} class_names; found labels up to {num - 1}.")
    return Listing(class_names=class_names, parts=parts)


def _multi_label_arrays(parts: dict[str, Part], class_names: list[str] | None) -> Listing:
    widths = {name: part.labels.shape[1] if part.labels.ndim == 2 else None for name, part in parts.items()}
    if len(set(widths.values())) != 1:
        raise DataError(f"Every y must be a 0/1 matrix with the same number of labels for multi-label data; "
                        f"received label columns {widths} (None: a 1-D array).")
    width = next(iter(widths.values()))
    class_names = [str(i) for i in range(width)] if class_names is None else [str(c) for c in class_names]
    if len(class_names) != width:
        raise DataError(f"class_names names {len(class_names)} labels but the label matrices have {width} columns.")
    return Listing(class_names=check_class_names(class_names, "class_names"), parts=parts)


# ---------------------------------------------------------------------------------- TFDS
def tfds_listing(name: str, data_dir: Path | None, train_split: str, val_split: str,
                 test_split: str | None, image_key: str, label_key: str) -> Listing:
    """A TFDS dataset by name; class names from its ``ClassLabel`` feature."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=None if data_dir is None else str(data_dir))
    except Exception as error:  # TFDS raises DatasetNotFoundError with suggestions
        raise DataError(f"TFDS dataset '{name}' not found: {error}") from None
    features = builder.info.features
    if image_key not in features or label_key not in features:
        raise DataError(f"TFDS dataset '{name}' has features {', '.join(features)}; set "
                        f"image_key/label_key (received {image_key!r}, {label_key!r}).")
    label = features[label_key]
    class_names = check_class_names(list(getattr(label, "names", None) or
                                         [str(i) for i in range(label.num_classes)]),
                                    f"TFDS dataset '{name}'")
    builder.download_and_prepare()
    parts = {}
    for part, split in (("train", train_split), ("val", val_split), ("test", test_split)):
        if split is None:
            continue
        try:
            ds = builder.as_dataset(split=split, shuffle_files=False)
            # Labels only: skip image decoding while counting.
            label_ds = builder.as_dataset(
                split=split, shuffle_files=False,
                decoders={image_key: tfds.decode.SkipDecoding()})
        except Exception as error:  # noqa: BLE001 - TFDS raises several types for bad splits
            raise DataError(f"TFDS dataset '{name}' cannot read split {split!r}: {error}. Its "
                            f"splits are: {', '.join(builder.info.splits) or 'unknown'}.") from None
        ds = ds.map(lambda ex: (_to_rgb(ex[image_key]), tf.cast(ex[label_key], tf.int64)),
                    num_parallel_calls=tf.data.AUTOTUNE)
        labels = np.array([int(y) for y in label_ds.map(
            lambda ex: ex[label_key]).batch(4096).unbatch().as_numpy_iterator()], np.int64)
        parts[part] = Part(labels=labels, dataset=ds)
    return Listing(class_names=class_names, parts=parts)


def _to_rgb(image):
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
    channels = image.shape[-1]
    if channels == 1:
        image = tf.tile(image, [1, 1, 3])
    elif channels == 4:
        alpha = tf.cast(image[..., 3:], tf.float32) / 255.0
        image = tf.cast(tf.round(tf.cast(image[..., :3], tf.float32) * alpha
                                 + 255.0 * (1.0 - alpha)), tf.uint8)
    return image
