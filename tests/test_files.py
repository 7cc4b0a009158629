"""Locks that die with their process, bounded reads of regular files only."""

import os
import signal
import subprocess
import sys
import time

import pytest

from restransfer.files import FileReadError, FolderLock, read_regular_file


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    first, second = FolderLock(tmp_path / ".lock"), FolderLock(tmp_path / ".lock")
    assert first.acquire() and first.held
    assert not second.acquire()
    assert f"process {os.getpid()}" in second.describe_holder()
    first.release()
    assert second.acquire()
    second.release()


def test_a_lock_of_a_killed_process_does_not_block(tmp_path):
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from restransfer.files import FolderLock;"
            "lock = FolderLock(sys.argv[1]); assert lock.acquire(); print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / ".lock"), os.getcwd()],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    lock = FolderLock(tmp_path / ".lock")
    assert not lock.acquire()
    assert f"process {holder.pid}" in lock.describe_holder()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.time() + 10
    while not lock.acquire():
        assert time.time() < deadline, "the dead process's lock still blocks"
        time.sleep(0.05)
    lock.release()


def test_read_regular_file_reads_only_regular_files_up_to_the_limit(tmp_path):
    (tmp_path / "a").write_bytes(b"12345")
    assert read_regular_file(tmp_path / "a", 5) == b"12345"
    with pytest.raises(FileReadError, match="above the limit of 4 B"):
        read_regular_file(tmp_path / "a", 4)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(FileReadError, match="FIFO"):
        read_regular_file(tmp_path / "fifo", 100)          # returns at once: opened non-blocking
    with pytest.raises(FileReadError, match="character device"):
        read_regular_file("/dev/zero", 100)
    with pytest.raises(FileReadError, match="a folder"):
        read_regular_file(tmp_path, 100)
    with pytest.raises(FileReadError, match="cannot read file"):
        read_regular_file(tmp_path / "missing", 100)
