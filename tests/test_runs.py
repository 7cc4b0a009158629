"""The run folder is read without any framework: its status, stored recipe and resume point."""

import json
import subprocess
import sys

import numpy as np

from restransfer.runs import RESUME, RunFolder


def test_reading_a_run_folder_loads_no_framework(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    (run / "recipe.yaml").write_text("model: {name: resnet18}\n")
    code = (
        "import sys\n"
        "from restransfer.runs import RunFolder\n"
        f"folder = RunFolder({str(run)!r})\n"
        "print(folder.info()['status'], folder.recipe_text().strip(), folder.resume_point().kind)\n"
        "loaded = sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules)\n"
        "print('loaded:', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    status, loaded = result.stdout.splitlines()
    assert status == "running model: {name: resnet18} restart"
    assert loaded == "loaded: []"


def test_resume_point_names_the_newest_intact_checkpoint(tmp_path):
    folder = RunFolder(tmp_path)
    folder.checkpoints.mkdir()
    for epoch in (1, 2):
        name = f"last-epoch{epoch:04d}"
        for suffix in (".weights.npz", ".optimizer.npz"):
            np.savez(folder.checkpoints / f"{name}{suffix}", x=np.zeros(2))
        state = {"epoch": epoch, "phase": 0, "checkpoint": name}
        (folder.checkpoints / f"{name}.state.json").write_text(json.dumps(state))
    (folder.checkpoints / "state.json").write_text(json.dumps(state))
    (folder.checkpoints / "last-epoch0002.optimizer.npz").unlink()  # the newest is damaged
    start = folder.resume_point()
    assert start.kind == RESUME and start.state["epoch"] == 1
    assert any("last-epoch0002.optimizer.npz is missing" in note for note in start.notes)
