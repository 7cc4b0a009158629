"""Folds of every listed source: the pooled train+val images split exactly as scikit-learn's
StratifiedKFold splits them, each image validated once per repeat, the test split untouched."""

import numpy as np
import pytest
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold

from restransfer.data.folds import fold_listing, fold_splits, pooled_part
from restransfer.data.pipeline import make_listing
from restransfer.data.schema import DataConfig
from restransfer.data.sources import Listing, Part
from restransfer.errors import DataError

from .conftest import make_folder


def config(**data):
    return DataConfig.model_validate(data).root


def folds_of(data: dict, folds: int, repeats: int = 1, seed: int = 3) -> tuple[Listing, list[Listing]]:
    base = make_listing(config(**data), seed=0)
    return base, [make_listing(config(**data, fold={"folds": folds, "index": i, "repeats": repeats, "seed": seed}),
                               seed=0) for i in range(1, folds * repeats + 1)]


def keys(part: Part) -> list:
    return list(part.paths) if part.paths is not None else [p.tobytes() for p in part.images]


def check_partition(base: Listing, folds: list[Listing], k: int, repeats: int = 1):
    pool = pooled_part(base)
    pool_keys = keys(pool)
    for r in range(repeats):
        seen = []
        for fold in folds[r * k:(r + 1) * k]:
            train, val = keys(fold.parts["train"]), keys(fold.parts["val"])
            assert not set(train) & set(val) and sorted(train + val) == sorted(pool_keys)
            seen += val
            assert fold.class_names == base.class_names
        assert sorted(seen) == sorted(pool_keys)  # every image validated exactly once per repeat


def test_folder_folds_are_sklearns_stratified_kfold(tmp_path):
    root = make_folder(tmp_path / "train", {"a": 5, "b": 4, "c": 6})
    test = make_folder(tmp_path / "test", {"a": 1, "b": 1, "c": 1}, seed=9)
    data = {"source": "folder", "path": root, "validation_split": 0.4, "test_path": test}
    base, folds = folds_of(data, 3)
    check_partition(base, folds, 3)
    pool = pooled_part(base)
    reference = StratifiedKFold(n_splits=3, shuffle=True, random_state=3).split(np.zeros(len(pool)), pool.labels)
    for fold, (_, val) in zip(folds, reference):
        assert fold.parts["val"].paths == [pool.paths[i] for i in sorted(val)]
        assert fold.parts["test"].paths == base.parts["test"].paths


def test_csv_digits_glyphs_and_arrays_sources_fold(tmp_path):
    make_folder(tmp_path / "img", {"x": 4, "y": 4})
    rows = ["path,label"] + [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted((tmp_path / "img").rglob("*.jpg"))]
    (tmp_path / "data.csv").write_text("\n".join(rows))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (12, 8, 8, 3)).astype("float32")
    sources = [
        {"source": "csv", "path": tmp_path / "data.csv", "validation_split": 0.25},
        {"source": "digits", "classes": [1, 2, 3], "per_class": 3, "val_per_class": 2},
        {"source": "glyphs", "classes": "ab", "per_class": 3, "val_per_class": 1},
        {"source": "arrays", "x_train": x[:8], "y_train": np.arange(8) % 2, "x_val": x[8:], "y_val": np.arange(4) % 2},
    ]
    for data in sources:
        base, folds = folds_of(data, 2, repeats=2)
        check_partition(base, folds, 2, repeats=2)


def test_repeats_follow_repeated_stratified_kfold():
    labels = np.array([0] * 5 + [1] * 5)
    ours = fold_splits(labels, folds=2, repeats=3, seed=1)
    reference = RepeatedStratifiedKFold(n_splits=2, n_repeats=3, random_state=1).split(np.zeros(10), labels)
    assert [v.tolist() for _, v in ours] == [sorted(v.tolist()) for _, v in reference]


def test_too_few_images_per_class_and_streamed_sources_are_named():
    listing = Listing(class_names=["cat", "dog"], parts={
        "train": Part(labels=np.array([0, 0, 1, 1, 1]), images=np.zeros((5, 8, 8, 3))),
        "val": Part(labels=np.array([1]), images=np.zeros((1, 8, 8, 3)))})
    with pytest.raises(DataError, match="class 'cat' has 2 labelled image.*3 folds"):
        fold_listing(listing, folds=3, index=1)
    streamed = Listing(class_names=["a", "b"], parts={"train": Part(labels=np.array([0, 1]), dataset=object()),
                                                      "val": Part(labels=np.array([0, 1]), dataset=object())})
    with pytest.raises(DataError, match="TFDS"):
        pooled_part(streamed)


def test_fold_index_past_the_last_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="past the last fold"):
        config(source="digits", fold={"folds": 2, "index": 3})
