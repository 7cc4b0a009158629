"""Multi-label data: a CSV `labels` column and an arrays 0/1 matrix become 0/1 label rows; the check counts labels."""

import numpy as np
import pytest

from restransfer.data import load_data
from restransfer.data.check import inspect_listing
from restransfer.data.sources import csv_listing, read_csv, read_labels_csv
from restransfer.errors import DataError
from tests.data.conftest import image_bytes, write


def _table(root, rows, header="path,labels"):
    for i, _ in enumerate(rows):
        write(root / f"{i}.jpg", image_bytes(size=(20, 20), seed=i))
    table = root / "labels.csv"
    table.write_text("\n".join([header, *(f"{i}.jpg,{cell}" for i, cell in enumerate(rows))]) + "\n")
    return table


def test_a_labels_column_gives_the_sorted_union_and_a_matrix(tmp_path):
    table = _table(tmp_path, ["dog;car", "", " car ", "cat;dog;cat"])
    paths, sets = read_labels_csv(table)
    assert sets == [("car", "dog"), (), ("car",), ("cat", "dog")]
    listing = csv_listing(table, None, None, None, 0)
    assert listing.class_names == ["car", "cat", "dog"] and listing.multi_label
    np.testing.assert_array_equal(listing.parts["train"].labels, [[1, 0, 1], [0, 0, 0], [1, 0, 0], [0, 1, 1]])
    assert listing.counts() == {"train": [2, 1, 2]}
    with pytest.raises(DataError, match="multi-label table. Set task: multi_label"):
        read_csv(table)


def test_a_single_label_table_stays_as_it_was(tmp_path):
    table = _table(tmp_path, ["cat", "dog"], header="path,label")
    assert read_labels_csv(table) is None
    listing = csv_listing(table, None, None, None, 0)
    assert not listing.multi_label and listing.parts["train"].labels.tolist() == [0, 1]


def test_validation_split_and_a_val_table_of_another_kind(tmp_path):
    table = _table(tmp_path, ["a", "b", "a;b", "", "a", "b", "a;b", "b", "a", "a"])
    listing = csv_listing(table, None, None, 0.3, seed=1)
    assert len(listing.parts["train"]) == 7 and len(listing.parts["val"]) == 3
    assert listing.parts["val"].labels.shape == (3, 2)
    other = tmp_path / "val.csv"
    other.write_text("path,label\n0.jpg,a\n")
    with pytest.raises(DataError, match="no 'path,labels' header"):
        csv_listing(table, other, None, None, 0)


def test_the_check_counts_each_label_and_names_never_always_and_empty(tmp_path):
    table = _table(tmp_path, ["a;b", "a", ""])
    report = inspect_listing(csv_listing(table, None, None, None, 0))
    assert report.ok and report.multi_label and report.counts == {"train": [2, 1]} and report.images == {"train": 3}
    problems = {(i.path, i.problem) for i in report.warnings}
    assert ("train", "1 of 3 images have no label") in problems
    rows = np.array([[1, 0], [1, 0]])
    x = np.full((2, 16, 16, 3), 128, np.uint8)
    from restransfer.data.sources import arrays_listing

    report = inspect_listing(arrays_listing(x, rows, x, rows, class_names=["a", "b"]))
    problems = {(i.path, i.problem.split(":")[0]) for i in report.warnings}
    assert ("a", "label present on every train image") in problems and ("b", "label never present in val") in problems


def test_an_arrays_matrix_reaches_the_pipeline_as_float_rows():
    x = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3)).astype(np.uint8)
    y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 1, 0], [1, 0, 0]])
    data = load_data(source="arrays", x_train=x, y_train=y, x_val=x, y_val=y, class_names=["r", "g", "b"],
                     image_size=16, batch_size=6)
    assert data.multi_label and data.counts["train"] == [3, 3, 2]
    _, labels = next(iter(data.val))
    np.testing.assert_array_equal(labels.numpy(), y.astype(np.float32))
    with pytest.raises(DataError, match="0/1 label matrix"):
        load_data(source="arrays", x_train=x, y_train=y * 2, x_val=x, y_val=y)
    with pytest.raises(DataError, match="class_names names 2 labels"):
        load_data(source="arrays", x_train=x, y_train=y, x_val=x, y_val=y, class_names=["r", "g"])


@pytest.mark.parametrize("mixer", [{"mixup": 0.4}, {"cutmix": 1.0}])
def test_mixup_and_cutmix_mix_label_vectors(mixer):
    import tensorflow as tf

    from restransfer.data.augment import build_augment
    from restransfer.data.schema import AugmentConfig

    rows = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]], np.float32)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32))
    _, mixed = build_augment(AugmentConfig(**mixer), (16, 16), seed=3)(images, tf.constant(rows))
    mixed = mixed.numpy()
    assert mixed.shape == rows.shape and not np.array_equal(mixed, rows)

    def blend_of_two_rows(labels):
        # Every label of a mixed vector takes one share lam of one image's row and 1 - lam of another's.
        for a in range(4):
            for b in range(4):
                differ = np.flatnonzero(rows[a] != rows[b])
                if not len(differ):
                    continue
                lam = (labels[differ[0]] - rows[b][differ[0]]) / (rows[a][differ[0]] - rows[b][differ[0]])
                if 0 <= lam <= 1 and np.allclose(labels, lam * rows[a] + (1 - lam) * rows[b], atol=1e-5):
                    return True
        return any(np.allclose(labels, row) for row in rows)

    assert all(blend_of_two_rows(labels) for labels in mixed)
