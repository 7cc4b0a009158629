"""Cross-validation folds of a listing: the training and validation images pooled, split by scikit-learn.

A recipe's ``data.fold`` (``{folds: 5, index: 2, repeats: 1, seed: 0}``) turns any listed source
(folder, csv, digits, glyphs, arrays) into one fold of a stratified k-fold split: the source's
``train`` and ``val`` parts are pooled (in that order) and scikit-learn's ``StratifiedKFold``
(``RepeatedStratifiedKFold`` for more than one repeat) picks the fold's validation images; a
``test`` part stays as it is, out of every fold. The run folder's recipe holds the fold, so
``evaluate``, ``report`` and a resumed run read exactly the same images.

Example:
    >>> labels = np.array([0, 0, 0, 1, 1, 1])
    >>> [val.tolist() for _, val in fold_splits(labels, folds=3, repeats=1, seed=0)]
    [[1, 5], [2, 3], [0, 4]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from restransfer.data.sources import Listing, Part
from restransfer.errors import DataError


def fold_splits(labels: np.ndarray, *, folds: int, repeats: int = 1, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, val)`` index arrays of every fold, repeat after repeat (``folds * repeats`` of them)."""
    import warnings

    from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold

    if repeats > 1:
        splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # class counts are checked (and named) by check_fold_counts
        return [(np.sort(train), np.sort(val)) for train, val in splitter.split(np.zeros(len(labels)), labels)]


def check_fold_counts(labels: np.ndarray, class_names: Sequence[str], folds: int) -> None:
    """`DataError` naming the first class with fewer labelled images than folds (a fold would lack it)."""
    counts = np.bincount(labels, minlength=len(class_names))
    for name, count in zip(class_names, counts):
        if count < folds:
            raise DataError(
                f"class '{name}' has {count} labelled image(s) (training and validation splits together); "
                f"{folds} folds need at least {folds} per class, so that every fold validates on each class "
                "and trains on it. Lower the number of folds or add images.")


def pooled_part(listing: Listing) -> Part:
    """The listing's ``train`` and ``val`` parts as one part, train first (the images folds are drawn from)."""
    parts = [listing.parts[name] for name in ("train", "val") if name in listing.parts]
    if any(part.dataset is not None for part in parts):
        raise DataError("Cross-validation needs a source whose images are listed (folder, csv, digits, glyphs, "
                        "arrays); a TFDS dataset streams its images. Export it to a folder or arrays first.")
    labels = np.concatenate([part.labels for part in parts])
    if all(part.paths is not None for part in parts):
        return Part(labels=labels, paths=[p for part in parts for p in part.paths])
    if all(part.images is not None for part in parts):
        return Part(labels=labels, images=np.concatenate([part.images for part in parts]))
    raise DataError("The training and validation splits hold images of different kinds (files and arrays); "
                    "cross-validation pools them, so give both as files or both as arrays.")


def fold_listing(listing: Listing, *, folds: int, index: int, repeats: int = 1, seed: int = 0) -> Listing:
    """``listing`` with ``train`` and ``val`` replaced by fold ``index`` (1-based, repeat after repeat)."""
    pool = pooled_part(listing)
    check_fold_counts(pool.labels, listing.class_names, folds)
    splits = fold_splits(pool.labels, folds=folds, repeats=repeats, seed=seed)
    if not 1 <= index <= len(splits):
        raise DataError(f"fold index {index} is out of range: {folds} folds x {repeats} repeats give folds "
                        f"1..{len(splits)}.")
    _, val = splits[index - 1]
    keep_val = np.zeros(len(pool), bool)
    keep_val[val] = True
    parts = {"train": pool.subset(~keep_val), "val": pool.subset(keep_val)}
    if "test" in listing.parts:
        parts["test"] = listing.parts["test"]
    return Listing(class_names=listing.class_names, parts=parts, ignored=listing.ignored, roots=dict(listing.roots))


__all__ = ["check_fold_counts", "fold_listing", "fold_splits", "pooled_part"]
