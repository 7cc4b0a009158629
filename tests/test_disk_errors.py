"""A read-only file system or a full disk: one message naming the file and what to do, never a traceback."""

import errno
import json
from pathlib import Path

import pytest

from restransfer.cli import main

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart_scratch.yaml"


def test_train_into_a_read_only_folder_is_one_message(tmp_path, capsys, monkeypatch):
    from restransfer import files

    def read_only(self):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(files.FolderLock, "acquire", read_only)
    code = main(["train", str(RECIPE), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"cannot write '{tmp_path / 'run'}/.lock': Read-only file system; choose a writable folder" in err


def test_a_full_disk_while_training_marks_the_run_failed_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from restransfer.training import checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "checkpoints" / "x.npz"))

    monkeypatch.setattr(checkpoint, "save_checkpoint", full)
    code = main(["train", str(RECIPE), "--out", str(tmp_path / "run"), "--set", "phases[0].epochs=1",
                 "--set", "data.per_class=2", "--set", "data.val_per_class=2"])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "rerun the same command" in err, err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed" and "No space left" in info["error"]


def test_a_failed_status_that_cannot_be_written_keeps_the_first_error(tmp_path, monkeypatch):
    """When even run.json cannot be written (the disk is full), the error raised is the first one."""
    import restransfer
    from restransfer.runs import RunFolder
    from restransfer.training import checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "checkpoint")

    real = RunFolder.write_info

    def write_info(self, **fields):
        if fields.get("status") == "failed":
            raise OSError(errno.ENOSPC, "No space left on device", "run.json")
        real(self, **fields)

    monkeypatch.setattr(checkpoint, "save_checkpoint", full)
    monkeypatch.setattr(RunFolder, "write_info", write_info)
    with pytest.raises(OSError) as caught:
        restransfer.train(RECIPE, {"phases[0].epochs": 1, "data.per_class": 2, "data.val_per_class": 2},
                          out=tmp_path / "run", verbose=0)
    assert caught.value.filename == "checkpoint"
