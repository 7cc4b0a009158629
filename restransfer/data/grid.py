"""A multi-label task made offline: 2x2 grids of scikit-learn's digits, labelled by the digits present.

Each image is ``2 * cell`` pixels square; each of its four cells is blank or holds one 8x8 digit
(scaled up, nearest neighbour), and its labels are the distinct digits it shows (a blank grid has
none). The digit images of the training, validation and test grids come from disjoint shares of
the 1,797 digits, so a model is judged on handwriting it never saw. ``write_grid`` writes PNG
files and one ``path,labels`` CSV per split, ready for a ``task: multi_label`` recipe.

Example:
    >>> images, sets = grid_images(4, digits=(0, 1, 2), seed=0)
    >>> images.shape, all(set(s) <= {"0", "1", "2"} for s in sets)
    ((4, 32, 32, 3), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from restransfer.errors import DataError

# The split of the digit images each split's grids draw from (train, val, test).
_SHARES = (0.6, 0.2, 0.2)
SPLITS = ("train", "val", "test")


def _digit_pools(digits: Sequence[int], seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``split -> (8x8 images, digit)`` of the chosen digits, disjoint across splits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.flatnonzero(np.isin(data.target, digits))
    order = np.random.default_rng(seed).permutation(keep)
    ends = np.cumsum([round(share * len(order)) for share in _SHARES[:-1]])
    return {name: (data.images[chosen], data.target[chosen])
            for name, chosen in zip(SPLITS, np.split(order, ends))}


def grid_images(count: int, *, digits: Sequence[int] = (0, 1, 2, 3, 4, 5), blank: float = 0.3, cell: int = 16,
                seed: int = 0, split: str = "train") -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """``count`` grids (uint8 RGB ``[count, 2 * cell, 2 * cell, 3]``) and each one's sorted digit names.

    Args:
        count: grids to make.
        digits: the digits that may appear (the labels).
        blank: the chance that a cell stays blank.
        cell: a cell's side in pixels (a multiple of 8).
        seed: seeds the digit shares and the grids.
        split: which share of the digit images to draw from (``train``, ``val`` or ``test``).
    """
    if cell % 8 or cell < 8:
        raise DataError(f"cell must be a positive multiple of 8 pixels (the digits are 8x8); received {cell}.")
    if not 0 <= blank < 1:
        raise DataError(f"blank must be in [0, 1); received {blank}.")
    if len(set(digits)) < 2 or not set(digits) <= set(range(10)):
        raise DataError(f"digits must be at least two distinct digits 0..9; received {list(digits)}.")
    images, targets = _digit_pools(sorted(set(digits)), seed)[split]
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    scale = cell // 8
    out = np.zeros((count, 2 * cell, 2 * cell), np.float32)
    sets = []
    for n in range(count):
        present = set()
        for row in range(2):
            for col in range(2):
                if rng.random() < blank:
                    continue
                pick = rng.integers(len(images))
                out[n, row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = np.kron(
                    images[pick], np.ones((scale, scale)))
                present.add(int(targets[pick]))
        sets.append(tuple(str(d) for d in sorted(present)))
    rgb = np.round(out * (255.0 / 16.0)).astype(np.uint8)[..., None].repeat(3, axis=-1)
    return rgb, sets


def write_grid(out: Path, *, counts: Sequence[int] = (600, 200, 200), digits: Sequence[int] = (0, 1, 2, 3, 4, 5),
               blank: float = 0.3, cell: int = 16, seed: int = 0) -> dict[str, Path]:
    """Write the grids as ``out/<split>/NNNNN.png`` and ``out/<split>.csv`` (``path,labels``); the CSVs by split.

    ``out`` must not exist or be empty: nothing already there is overwritten.
    """
    from PIL import Image

    from restransfer.files import write_text
    from restransfer.training.task import labels_text

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not an empty folder; give a new folder for the grid data "
                        "(nothing is overwritten).")
    tables = {}
    for split, count in zip(SPLITS, counts):
        images, sets = grid_images(count, digits=digits, blank=blank, cell=cell, seed=seed, split=split)
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        rows = ["path,labels"]
        for index, (image, labels) in enumerate(zip(images, sets)):
            Image.fromarray(image).save(folder / f"{index:05d}.png")
            rows.append(f"{split}/{index:05d}.png,{labels_text(labels)}")
        tables[split] = out / f"{split}.csv"
        write_text(tables[split], "\n".join(rows) + "\n")
    return tables


__all__ = ["SPLITS", "grid_images", "write_grid"]
