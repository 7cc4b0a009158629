"""`restransfer data grid`: the offline multi-label digits task, its files and its labels."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from restransfer.cli import main
from restransfer.data.grid import grid_images
from restransfer.data.sources import csv_listing


def test_each_cell_is_blank_or_a_real_digit_and_the_labels_name_them():
    images, sets = grid_images(20, digits=(3, 7), blank=0.5, cell=8, seed=1)
    digits = load_digits()
    known = {d.astype(np.uint8).tobytes(): str(t) for d, t in zip(np.round(digits.images * 255 / 16), digits.target)}
    for image, labels in zip(images, sets):
        shown = set()
        for r in range(2):
            for c in range(2):
                cell = image[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8, 0]
                if cell.any():
                    shown.add(known[cell.tobytes()])
        assert tuple(sorted(shown)) == labels
    assert any(not s for s in sets) and any(len(s) == 2 for s in sets)


def test_the_splits_draw_from_disjoint_handwriting():
    a, _ = grid_images(50, blank=0.0, cell=8, seed=0, split="train")
    b, _ = grid_images(50, blank=0.0, cell=8, seed=0, split="test")
    cells = [{img[r:r + 8, c:c + 8, 0].tobytes() for img in x for r in (0, 8) for c in (0, 8)} for x in (a, b)]
    assert not cells[0] & cells[1]


def test_the_command_writes_tables_a_multi_label_listing_reads_and_overwrites_nothing(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["data", "grid", str(out), "--counts", "6", "3", "3", "--digits", "012"]) == 0
    listing = csv_listing(out / "train.csv", out / "val.csv", out / "test.csv", None, 0)
    assert listing.multi_label and set(listing.class_names) <= {"0", "1", "2"}
    assert [len(p) for p in listing.parts.values()] == [6, 3, 3]
    assert main(["data", "grid", str(out)]) != 0
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(Exception, match="multiple of 8"):
        grid_images(2, cell=12)
