"""An export belongs to one model.keras: export holds the run lock, and a kept export is proven current."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from restransfer import export_run
from restransfer.export import ExportError
from restransfer.runs import RunFolder

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_records_the_digest_of_the_model_it_exported(exports, run_dir):
    manifest = json.loads((exports["keras"].path / "export.json").read_text())
    assert manifest["source_sha256"] == _sha256(run_dir / "model.keras")


def test_export_is_refused_while_the_run_folder_is_in_use(run_dir, tmp_path):
    lock = RunFolder(run_dir).lock()  # as a `train --force` into this folder would hold it
    try:
        with pytest.raises(ExportError, match="in use by"):
            export_run(run_dir, "keras", out=tmp_path / "out", verify=False)
    finally:
        lock.release()
    assert not (tmp_path / "out").exists()


def test_a_kept_export_of_another_model_is_rebuilt(exports, tmp_path):
    """An export that landed for an older model.keras is not 'kept' by the run's rerun."""
    import restransfer
    from restransfer.export.saved_model import predict_saved_model

    overrides = {"phases[0].epochs": 1, "data.per_class": 2, "data.val_per_class": 2, "export": ["saved_model"]}
    run = restransfer.train(RECIPES / "quickstart_scratch.yaml", overrides, out=tmp_path / "run", verbose=0)
    target = run.run_dir / "export" / "saved_model"
    shutil.rmtree(target)
    shutil.copytree(exports["saved_model"].path, target)  # another model's export, as a late `export RUN` lands
    info = json.loads((run.run_dir / "run.json").read_text())
    (run.run_dir / "run.json").write_text(json.dumps({**info, "status": "running"}))  # killed while exporting
    run = restransfer.train(RECIPES / "quickstart_scratch.yaml", overrides, out=tmp_path / "run", verbose=0)
    manifest = json.loads((target / "export.json").read_text())
    assert manifest["source_sha256"] == _sha256(run.run_dir / "model.keras")
    assert manifest["class_names"] == run.class_names
    served = predict_saved_model(target, [target / name for name in manifest["samples"]], top_k=len(run.class_names))
    assert len(served) == len(manifest["samples"])
    assert "rebuilt" in (run.run_dir / "train.log").read_text()
    np.testing.assert_allclose(np.load(target / "samples" / "reference.npz")["probabilities"].sum(axis=1), 1, atol=1e-5)


def test_scratch_left_by_a_killed_verification_is_removed_by_the_next(exports, tmp_path, monkeypatch):
    """A verification killed with -9 leaves its scratch folder; the next verification removes it."""
    import tempfile

    from restransfer.export.verify import verify_export
    from restransfer.files import FolderLock

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / "restransfer-verify-dead0001"
    dead.mkdir()
    (dead / "inputs.npz").write_bytes(b"left by a kill")
    (tmp_path / "restransfer-verify-dead0001.lock").write_text("{}")  # its process is gone: no flock
    live = tmp_path / "restransfer-verify-live0001"
    live.mkdir()
    holder = FolderLock(tmp_path / "restransfer-verify-live0001.lock")
    assert holder.acquire()  # a verification running now
    try:
        assert verify_export(exports["keras"].path).passed
    finally:
        holder.release()
    assert not dead.exists() and not (tmp_path / "restransfer-verify-dead0001.lock").exists()
    assert live.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["restransfer-verify-live0001",
                                                         "restransfer-verify-live0001.lock"]


def test_an_export_that_lands_second_on_one_target_is_refused_not_a_traceback(tmp_path):
    from restransfer.export.artifact import staged_directory

    out = tmp_path / "out"
    with pytest.raises(ExportError, match="already exists and is not empty; nothing was overwritten"):
        with staged_directory(out) as stage:
            (stage / "mine.txt").write_text("second")
            out.mkdir()
            (out / "theirs.txt").write_text("first")  # another export to the same target landed meanwhile
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
