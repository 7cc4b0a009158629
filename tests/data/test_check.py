import json
from pathlib import Path

import pytest

from restransfer.cli import main
from restransfer.data.check import inspect_files, sniff_format
from tests.data.conftest import break_folder, huge_png, image_bytes, make_folder, write


def test_sniff_format():
    assert sniff_format(image_bytes("PNG")[:16]) == "PNG"
    assert sniff_format(image_bytes("JPEG")[:16]) == "JPEG"
    assert sniff_format(image_bytes("WEBP")[:16]) == "WEBP"
    assert sniff_format(image_bytes("GIF", "P")[:16]) == "GIF"
    assert sniff_format(image_bytes("BMP")[:16]) == "BMP"
    assert sniff_format(b"hello world") is None


def test_check_clean_folder_exits_zero(messy_folder, capsys, tmp_path):
    report_file = tmp_path / "report.json"
    assert main(["data", "check", str(messy_folder), "--json", str(report_file)]) == 0
    out = capsys.readouterr().out
    assert "OK: training can start" in out and "cmyk.jpg" in out
    report = json.loads(report_file.read_text())
    assert report["ok"] and report["counts"] == {"train": [7, 8]}
    assert report["ignored"] == {"hidden": 2, "not an image": 1}


def test_check_broken_folder_exits_nonzero_and_names_files(messy_folder, capsys, tmp_path):
    broken = break_folder(messy_folder)
    report_file = tmp_path / "report.json"
    assert main(["data", "check", str(messy_folder), "--json", str(report_file)]) == 1
    report = json.loads(report_file.read_text())
    bad = {Path(i["path"]).name: i["problem"] for i in report["bad"]}
    assert set(bad) == {p.name for p in broken.values()}
    assert bad["truncated.jpg"].startswith("corrupt or truncated")
    assert bad["text.png"].startswith("not an image") and bad["empty.jpg"].startswith("empty")
    assert "training would fail" in capsys.readouterr().out


def test_check_train_val_layout_finds_duplicates_across_splits(tmp_path, capsys):
    make_folder(tmp_path / "train", {"a": 3, "b": 3})
    make_folder(tmp_path / "val", {"a": 1, "b": 1}, seed=500)
    leak = (tmp_path / "train" / "a" / "000.jpg").read_bytes()
    write(tmp_path / "val" / "a" / "leak.jpg", leak)
    report_file = tmp_path / "r.json"
    assert main(["data", "check", str(tmp_path), "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["counts"] == {"train": [3, 3], "val": [2, 1]}
    duplicates = [w for w in report["warnings"] if "duplicate" in w["problem"]]
    assert len(duplicates) == 1 and duplicates[0]["path"].endswith("leak.jpg")
    assert "across train and val" in duplicates[0]["problem"]


def test_check_recipe_resolves_paths_against_the_current_directory(tmp_path, capsys, monkeypatch):
    """The same folders `train RECIPE` reads: relative paths resolve against the current directory."""
    make_folder(tmp_path / "data" / "flowers", {"rose": 12, "tulip": 2})
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.parent.mkdir()
    recipe.write_text("model: {name: resnet18}\nseed: 3\nphases: [{epochs: 1}]\n"
                      "data:\n  source: folder\n  path: data/flowers\n"
                      "  validation_split: 0.5\n  image_size: 32\n")
    monkeypatch.chdir(tmp_path)
    report_file = tmp_path / "r.json"
    assert main(["data", "check", "recipes/r.yaml", "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["counts"] == {"train": [6, 1], "val": [6, 1]}
    assert any("imbalance" in w["problem"] for w in report["warnings"])
    assert any("single training image" in w["problem"] for w in report["warnings"])


def test_check_recipe_errors_are_one_paragraph(tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name: resnet18}\nphases: [{epochs: 1}]\n"
                      "data:\n  source: folder\n  path: missing\n  validation_split: 0.2\n")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "check", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "data.path" in err and str(tmp_path / "missing") in err and "Traceback" not in err
    assert main(["data", "check", str(tmp_path / "nope")]) == 1


def test_check_digits_recipe_counts(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name: cifar_resnet20}\nphases: [{epochs: 1}]\n"
                      "data: {source: digits, classes: [5, 6, 7, 8, 9], per_class: 10}\n")
    assert main(["data", "check", str(recipe)]) == 0
    assert "50" in capsys.readouterr().out


def test_check_results_are_cached_by_size_and_mtime(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 3})
    paths = [str(p) for p in sorted((root / "a").iterdir())]
    first, cached = inspect_files(paths)
    assert cached == 0 and all("error" not in v for v in first.values())
    again, cached = inspect_files(paths)
    assert cached == 3 and again == first
    Path(paths[0]).write_bytes(b"garbage now")
    changed, cached = inspect_files(paths)
    assert cached == 2 and changed[paths[0]]["error"].startswith("not an image")


def test_check_names_fifos_devices_and_huge_images_without_reading_them(tmp_path, capsys):
    import os
    import threading

    root = make_folder(tmp_path / "d", {"a": 2, "b": 2})
    os.mkfifo(root / "a" / "pipe.jpg")                       # open() would block forever
    os.symlink("/dev/zero", root / "b" / "zero.jpg")         # read() would never end
    write(root / "b" / "bomb.png", huge_png())               # 23000x23000 px in a few KB
    report_file = tmp_path / "r.json"
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        code=main(["data", "check", str(root), "--json", str(report_file)])), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "data check hung"
    assert result["code"] == 1
    bad = {Path(i["path"]).name: i["problem"] for i in json.loads(report_file.read_text())["bad"]}
    assert "FIFO" in bad["pipe.jpg"] and "not a regular file" in bad["pipe.jpg"]
    assert "character device" in bad["zero.jpg"]
    assert "529,000,000 pixels" in bad["bomb.png"] and "not decoded" in bad["bomb.png"]
    out = capsys.readouterr().out
    assert "7 files checked (0 from cache)" in out


def test_images_above_the_pixel_limit_are_not_decoded(tmp_path):
    files = [write(tmp_path / "a.png", huge_png(9000, 6000)), write(tmp_path / "b.png", huge_png(100, 80))]
    infos, _ = inspect_files([str(p) for p in files])
    assert infos[str(files[0])]["error"] == ("its header declares 9000x6000 pixels, above the limit "
                                             "of 50,000,000; not decoded")
    assert "not decoded" not in infos[str(files[1])].get("error", "")


def test_check_prints_paths_and_class_names_that_look_like_markup(tmp_path, capsys, monkeypatch):
    root = make_folder(tmp_path / "[/red]x", {"[red]a": 2, "[bold]b": 2})   # "[/red]x" is two folders
    write(root / "[red]a" / "[/x].jpg", b"not an image")
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "[red]a" in out and "[bold]b" in out and "[red]a/[/x].jpg" in out


def test_class_names_with_line_breaks_are_refused(tmp_path):
    from restransfer.data.sources import csv_listing, folder_listing
    from restransfer.errors import DataError

    root = make_folder(tmp_path / "d", {"cat": 2, "sea\nlion": 2})
    with pytest.raises(DataError, match=r"'sea\\nlion'.*line break"):
        folder_listing(root, None, None, None, 0)
    table = tmp_path / "labels.csv"
    write(tmp_path / "1.jpg", image_bytes())
    table.write_text('path,label\n1.jpg,cat\n1.jpg,"dog\rx"\n')
    with pytest.raises(DataError, match="line break"):
        csv_listing(table, None, None, None, 0)


def test_a_missing_data_folder_names_it_in_the_example(tmp_path):
    from restransfer.data.sources import folder_listing
    from restransfer.errors import DataError

    with pytest.raises(DataError) as caught:
        folder_listing(tmp_path / "nope", None, None, None, 0)
    assert "{root}" not in str(caught.value) and f"{tmp_path / 'nope'}/cat/1.jpg" in str(caught.value)


def test_check_piped_to_a_file_keeps_every_path_on_one_line(messy_folder, tmp_path):
    import subprocess
    import sys

    broken = break_folder(messy_folder)
    deep = messy_folder / "cat" / "a_rather_long_subfolder_name_for_the_table" / "another_level"
    deep.mkdir(parents=True)
    long_name = write(deep / "an_image_with_a_name_much_longer_than_any_terminal_column.jpg", b"text, no image")
    out = tmp_path / "check.txt"
    with open(out, "w") as f:  # a file, not a terminal: what `restransfer data check DIR > log` sees
        done = subprocess.run([sys.executable, "-m", "restransfer", "data", "check", str(messy_folder)],
                              stdout=f, stderr=subprocess.PIPE, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1
    text = out.read_text()
    assert f"paths relative to {messy_folder}/" in text
    for path in [*broken.values(), long_name]:
        relative = str(path.relative_to(messy_folder))
        line = next((line for line in text.splitlines() if relative in line), None)
        assert line is not None, f"{relative} is not whole on any line of:\n{text}"
        assert str(messy_folder) not in line  # relative to the dataset root
    # The truncated JPEG is reported in the table, not by libjpeg's native lines on stderr.
    assert "Premature end of JPEG data" not in done.stderr and "jpeg::Uncompress" not in done.stderr
    assert done.stderr.strip() == "", done.stderr
