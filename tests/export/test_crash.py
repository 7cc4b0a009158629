"""kill -9 during an export's verification: the verifier stops too, the rerun makes the export."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tensorflow,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")]


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append((int(entry), Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")))
        except (OSError, IndexError, ValueError):
            pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_during_verification_stops_the_verifier_and_the_rerun_exports(run_dir, tmp_path):
    out = tmp_path / "sm"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    exporter = subprocess.Popen(
        [sys.executable, "-m", "restransfer", "export", str(run_dir), "--format", "saved_model",
         "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 400
    verifier = None
    while verifier is None and time.time() < deadline:
        assert exporter.poll() is None, exporter.stdout.read()
        verifier = next((pid for pid, cmd in children(exporter.pid) if "verify_export.py" in cmd), None)
        time.sleep(0.1)
    assert verifier is not None, "the verification process never started"
    exporter.send_signal(signal.SIGKILL)
    exporter.wait()
    deadline = time.time() + 20
    while alive(verifier) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(verifier), "the verifier was left running, orphaned"
    assert not out.exists()
    assert list(tmp_path.glob(".sm.partial-*"))           # what the kill left

    from restransfer import export_run

    result = export_run(run_dir, "saved_model", out)
    assert result.verification.passed and (out / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]   # staging and lock files gone
