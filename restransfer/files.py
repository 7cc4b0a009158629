"""Files, safely: atomic writes with the user's permissions, and bounded reads of regular files.

A low-floor module (standard library only): run folders, checkpoints, exports and the data
layer all write and read through it.

- ``atomic_write`` writes a temporary file next to the target and moves it into place with
  ``os.replace``, so a crash (Ctrl-C, kill -9, a full disk) leaves the old file or the new one,
  never half of one. Temporary names start with ``.tmp-``; ``remove_temporaries`` deletes the
  ones a killed process left behind.
- ``tempfile.mkstemp``/``mkdtemp`` create 0600 files and 0700 folders whatever the umask; what we
  leave behind gets the modes a plain ``open()``/``mkdir()`` would give (``0o666``/``0o777``
  minus the umask), so a shared run folder stays readable by the people it is shared with.
- ``read_regular_file`` reads only regular files (never a FIFO, which blocks, or a device such
  as ``/dev/zero``, which never ends) and at most ``max_bytes``; ``read_text`` and ``read_json``
  read every small file of a run folder or an export through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"
# The JSON and text files a run or an export writes (metrics, history, state, manifests).
MAX_TEXT_BYTES = 64 << 20


def umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # Elsewhere the only way to read it is to set it; restore it at once.
    current = os.umask(0o022)
    os.umask(current)
    return current


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` minus the umask."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: ``0o777`` minus the umask."""
    return 0o777 & ~umask()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path next to ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras requires the ".weights.h5" suffix, so the temporary name keeps the suffixes.
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="".join(path.suffixes) or ".tmp",
                               dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_text(path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A regular file of at most ``max_bytes`` as UTF-8 text.

    Raises:
        FileReadError: not a regular file, too large, or unreadable (``reason`` says which).
        UnicodeDecodeError: not UTF-8 (a ``ValueError``).
    """
    return read_regular_file(path, max_bytes).decode("utf-8")


def read_json(path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES) -> Any:
    """A regular file of at most ``max_bytes`` parsed as JSON.

    Raises:
        FileReadError: not a regular file, too large, or unreadable.
        ValueError: not UTF-8, not JSON, or nested too deeply for the parser.
    """
    text = read_text(path, max_bytes)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"it is nested more than {sys.getrecursionlimit()} levels deep, "
                         "which no file restransfer writes is") from None


def remove_temporaries(folders: Iterable[Path], patterns: Iterable[str] = (TEMP_PREFIX + "*",)
                       ) -> list[Path]:
    """Delete what interrupted atomic writes left in ``folders`` (not recursive); return it.

    Only call this while no other process writes these folders (the run-folder lock holds).
    """
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for pattern in patterns:
            for path in folder.glob(pattern):
                try:
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                    removed.append(path)
                except FileNotFoundError:
                    pass
    return removed


class FileReadError(OSError):
    """A file cannot be read as data: not a regular file, too large, or an OS error.

    ``reason`` is a short phrase for messages, e.g. ``"not a regular file (a FIFO)"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def format_size(size: float) -> str:
    """``1536`` -> ``"1.50 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def regular_file_problem(path: str | os.PathLike, max_bytes: int | None = None,
                         st: os.stat_result | None = None) -> str | None:
    """Why ``path`` must not be read as data (not a regular file, too large), or None."""
    if st is None:
        try:
            st = os.stat(path)
        except OSError as error:
            return f"missing or unreadable ({error.strerror or error})"
    if not stat.S_ISREG(st.st_mode):
        return f"{_kind(st.st_mode)}, not a regular file; only regular files are read"
    if max_bytes is not None and st.st_size > max_bytes:
        return (f"{format_size(st.st_size)}, above the limit of {format_size(max_bytes)} for "
                "one file")
    return None


def printable(name: str) -> str:
    """``name`` safe to print on one terminal line: control characters, line breaks and bytes
    that were not UTF-8 (surrogate escapes from ``os.listdir``) written as Python escapes.

    A file name may hold a newline (it would split a table row) or an ESC sequence (it would
    drive the terminal); printed names go through this.

    Example:
        >>> printable("two\nlines\udcff.jpg")
        'two\\nlines\\xff.jpg'
    """
    if name.isprintable():
        return name
    out = []
    for char in name:
        if "\udc80" <= char <= "\udcff":  # a byte that was not UTF-8, kept by surrogateescape
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(repr(char)[1:-1] if ord(char) < 0xD800 or ord(char) > 0xDFFF else f"\\u{ord(char):04x}")
    return "".join(out)


def not_utf8(name: str) -> bool:
    """Whether a name from the file system holds bytes that are not UTF-8 (surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes, read in blocks (any size, constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``FileReadError`` otherwise.

    Opened without blocking and checked on the open descriptor, so a file swapped for a FIFO
    or a device between a listing and this read cannot hang or exhaust memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise FileReadError(path, f"cannot read file ({error.strerror or error})") from None
    try:
        problem = regular_file_problem(path, max_bytes, os.fstat(fd))
        if problem is not None:
            raise FileReadError(path, problem)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # the file grew after the check
                raise FileReadError(path, f"grew above the limit of {format_size(max_bytes)}")
        return b"".join(chunks)
    except OSError as error:
        if isinstance(error, FileReadError):
            raise
        raise FileReadError(path, f"cannot read file ({error.strerror or error})") from None
    finally:
        os.close(fd)


class FolderLock:
    """An exclusive, non-blocking lock on a lock file, held by this process until `release`.

    It is an ``flock`` on the open file: the kernel drops it when the process exits however it
    exits (``kill -9`` included), so a lock left by a dead process never blocks anyone, and no
    stale-lock guessing is needed. The file keeps who holds it (pid, host, command, since) for
    the message another process shows. Where ``fcntl`` is missing (Windows) nothing is locked.

    Example:
        >>> lock = FolderLock(Path("runs/a/.lock"))
        >>> if not lock.acquire():
        ...     print(lock.holder())
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock; False when another process (or another FolderLock) holds it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), file_mode())
        try:
            import fcntl
        except ImportError:  # no flock: proceed unlocked
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
        import socket
        import sys
        import time

        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "command": " ".join(sys.argv)[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        return True

    def holder(self) -> dict:
        """What the holder wrote: ``pid``, ``host``, ``command``, ``since`` (empty if unknown)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def describe_holder(self) -> str:
        """``"process 123 on host (restransfer train r.yaml, since 2025-01-01 10:00:00)"``."""
        info = self.holder()
        if not info:
            return "another process"
        details = [f"`{info['command']}`" if info.get("command") else "",
                   f"since {info['since']}" if info.get("since") else ""]
        details = ", ".join(d for d in details if d)
        return (f"process {info.get('pid', '?')} on {info.get('host', '?')}"
                + (f" ({details})" if details else ""))

    def release(self, *, remove: bool = False) -> None:
        """Give the lock up; ``remove`` also deletes the lock file (while still holding it)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def __del__(self) -> None:
        self.release()

    def __enter__(self) -> FolderLock:
        if not self.acquire():
            raise BlockingIOError(f"{self.path} is held by {self.describe_holder()}")
        return self

    def __exit__(self, *exc) -> None:
        self.release()
