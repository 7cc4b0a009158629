"""Hostile names and tables: every one a clear message (never a traceback), printed escaped."""

import os

import pytest

from restransfer.cli import main
from restransfer.errors import DataError
from tests.data.conftest import image_bytes, make_folder, write


def _check(args, capsys):
    code = main(["data", "check", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_a_csv_with_a_utf8_bom_reads_its_header(tmp_path):
    from restransfer.data.sources import read_csv

    write(tmp_path / "1.jpg", image_bytes())
    table = tmp_path / "labels.csv"
    table.write_bytes("path,label\n1.jpg,cat\n1.jpg,dog\n".encode("utf-8-sig"))
    paths, labels = read_csv(table)
    assert labels == ["cat", "dog"] and paths == [str(tmp_path / "1.jpg")] * 2


def test_a_nul_byte_or_bad_encoding_in_a_csv_is_named(tmp_path):
    from restransfer.data.sources import read_csv

    table = tmp_path / "labels.csv"
    table.write_bytes(b"path,label\n1\x00.jpg,cat\n2.jpg,dog\n")
    with pytest.raises(DataError, match=r"labels.csv, line 2: .*NUL"):
        read_csv(table)
    table.write_bytes(b"path,label\n\xff\xfe.jpg,cat\n")
    with pytest.raises(DataError, match=r"labels.csv.*not UTF-8"):
        read_csv(table)


def test_non_utf8_file_and_class_folder_names_are_reported(tmp_path, capsys, monkeypatch):
    root = make_folder(tmp_path / "d", {"cat": 2, "dog": 2})
    raw = os.fsencode(root)
    with open(os.path.join(raw, b"cat", b"bad\xff.jpg"), "wb") as f:
        f.write(image_bytes(seed=9))
    os.mkdir(os.path.join(raw, b"fish\xfe"))
    with open(os.path.join(raw, b"fish\xfe", b"1.jpg"), "wb") as f:
        f.write(image_bytes(seed=10))
    monkeypatch.setenv("COLUMNS", "300")
    code, out, err = _check([str(root), "--json", str(tmp_path / "r.json")], capsys)
    assert code in (1, 2)
    assert "not UTF-8" in out + err and "fish" in out + err


def test_a_class_folder_that_is_a_symlink_loop_is_named(tmp_path, capsys):
    root = make_folder(tmp_path / "d", {"cat": 2, "dog": 2})
    os.symlink(root / "loop", root / "loop")
    code, out, err = _check([str(root)], capsys)
    assert "loop" in out + err and ("symbolic link" in out + err or "symlink" in out + err)


def test_control_characters_in_names_are_escaped_in_the_table(tmp_path, capsys, monkeypatch):
    root = make_folder(tmp_path / "d", {"cat": 2, "dog": 2})
    write(root / "cat" / "two\nlines.jpg", b"not an image")
    write(root / "cat" / "esc\x1b[31mred.jpg", b"not an image")
    monkeypatch.setenv("COLUMNS", "300")
    code, out, err = _check([str(root)], capsys)
    assert code == 1
    assert "\x1b[31m" not in out and "two\\nlines.jpg" in out and "esc\\x1b[31mred.jpg" in out


def test_limit_below_zero_is_refused_and_hidden_rows_are_counted(tmp_path, capsys, monkeypatch):
    root = make_folder(tmp_path / "d", {"cat": 2, "dog": 2})
    for i in range(7):
        write(root / "cat" / f"bad{i}.jpg", b"not an image")
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit) as caught:
        main(["data", "check", str(root), "--limit", "-5"])
    assert caught.value.code == 2 and "--limit: expected a number of rows, 0 or more" in capsys.readouterr().err
    code, out, err = _check([str(root), "--limit", "2"], capsys)
    assert "... 5 more" in out


@pytest.mark.parametrize("target", ["dir", "/dev/full"])
def test_json_report_to_a_folder_or_a_full_device_is_a_message(tmp_path, capsys, target):
    root = make_folder(tmp_path / "d", {"cat": 2, "dog": 2})
    path = str(tmp_path) if target == "dir" else target
    if target == "/dev/full" and not os.path.exists(target):
        pytest.skip("no /dev/full here")
    code, out, err = _check([str(root), "--json", path], capsys)
    assert code == 2 and f"Cannot write the --json report to {path}" in err


@pytest.mark.parametrize("source,path,message", [
    ("folder", "/dev/zero", "is not a folder"),
    ("csv", "/dev/zero", "is not a regular file"),
    ("folder", "FILE", "is not a folder"),
    ("csv", "DIR", "is not a regular file"),
])
def test_validate_refuses_a_data_path_of_the_wrong_kind(tmp_path, capsys, source, path, message):
    (tmp_path / "labels.csv").write_text("path,label\n")
    path = {"FILE": str(tmp_path / "labels.csv"), "DIR": str(tmp_path)}.get(path, path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name: cifar_resnet20}}\nphases: [{{epochs: 1}}]\n"
                      f"data: {{source: {source}, path: {path}, validation_split: 0.2, image_size: 16}}\n")
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"data.path: path '{path}' {message}" in err


def test_validate_prints_a_phase_name_with_an_esc_sequence_escaped(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text('model: {name: cifar_resnet20}\nphases: [{name: "x\\e[31my", epochs: 1}]\n'
                      "data: {source: digits, image_size: 16}\n")
    assert main(["validate", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "x\\x1b[31my" in out
