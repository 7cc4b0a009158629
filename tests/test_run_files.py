"""Every file read from a run folder or an export is a bounded read of a regular file: a
/dev/zero symlink, a FIFO or a folder in its place gets a message naming it, never endless
memory, a hang, a traceback or "missing, rerun its train command"."""

import contextlib
import json
import os
import resource

import pytest

from restransfer.errors import ConfigError
from restransfer.files import FileReadError, read_json
from restransfer.runs import RunFolder


@contextlib.contextmanager
def memory_cap(extra: int = 1 << 30):
    """At most ``extra`` more bytes of address space while inside: a read of /dev/zero fails
    fast with MemoryError instead of growing until the kernel kills the test run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as status:
        used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (used + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _run_folder(path):
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"status": "finished", "image_size": [8, 8]}))
    (path / "class_names.json").write_text(json.dumps(["a", "b"]))
    (path / "recipe.yaml").write_text("model: {name: cifar_resnet8}\n")
    (path / "model.keras").write_bytes(b"PK not really")
    return path


def _replace(path, kind):
    path.unlink()
    if kind == "/dev/zero":
        os.symlink("/dev/zero", path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


KINDS = {"/dev/zero": "a character device", "fifo": "a FIFO", "folder": "a folder"}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name, read", [
    ("run.json", lambda run: run.info()),
    ("class_names.json", lambda run: run.class_names()),
    ("recipe.yaml", lambda run: run.recipe_text()),
    ("model.keras", lambda run: run.require_model()),
    ("run.json", lambda run: run.require_model()),
])
def test_run_folder_files_that_are_no_regular_files_are_named(tmp_path, name, read, kind):
    run = RunFolder(_run_folder(tmp_path / "run"))
    _replace(run.path / name, kind)
    with memory_cap(), pytest.raises(ConfigError) as caught:
        read(run)
    message = str(caught.value)
    assert f"{name}" in message and KINDS[kind] in message and "not a regular file" in message
    assert "rerun its train command" not in message and "no run.json" not in message


def test_run_folder_json_too_large_or_too_deep_is_damaged_not_a_traceback(tmp_path):
    run = RunFolder(_run_folder(tmp_path / "run"))
    (run.path / "run.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ConfigError, match=r"run.json is damaged \(it is nested more than"):
        run.info()
    (run.path / "class_names.json").write_text(json.dumps(["x" * 100] * 50))
    with pytest.raises(FileReadError, match="above the limit of 1.00 KiB"):
        read_json(run.path / "class_names.json", max_bytes=1024)
    with pytest.raises(ValueError, match="nested more than"):
        read_json(run.path / "run.json")


@pytest.mark.parametrize("kind", list(KINDS))
def test_export_manifest_that_is_no_regular_file_is_named(tmp_path, kind):
    from restransfer.export.artifact import ExportError, read_manifest

    export = tmp_path / "export"
    export.mkdir()
    (export / "export.json").write_text("{}")
    _replace(export / "export.json", kind)
    with memory_cap(), pytest.raises(ExportError, match=f"export.json.*{KINDS[kind]}.*, not a regular file"):
        read_manifest(export)
