"""Keep TensorFlow's native start-up chatter out of the command line's output.

TensorFlow 2.21 loads its C++ libraries before absl reads any log level, so lines such as
``I0000 ... port.cc:153] oneDNN custom operations are on`` and "All log messages before
absl::InitializeLog() is called are written to STDERR" reach stderr whatever
``TF_CPP_MIN_LOG_LEVEL`` says; on a machine without a GPU it adds "failed call to cuInit"; a
truncated JPEG adds "Premature end of JPEG data" at each decode, which the data check already
reports by path. The
``restransfer`` command routes the process's stderr (file descriptor 2, so native code and
child processes too) through a pipe and forwards every line except those. Python warnings,
errors and tracebacks pass unchanged. ``RESTRANSFER_NATIVE_LOGS=1`` turns the filter off.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

# absl's format: severity letter, MMDD, time, thread id, file:line] message.
_ABSL_INFO = re.compile(rb"^I\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
# A partial line that could still become one of those waits for its end; any other is
# forwarded at once (progress output without a newline).
_MAYBE_NOISE = re.compile(rb"^(I\d|E\d|W\d|WARNING: All|To enable)")
_NOISE = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(rb"^To enable the following instructions: .* rebuild TensorFlow"),
    re.compile(rb"^E\d{4} [\d:. ]+\d+ cuda_platform\.cc:\d+\] failed call to cuInit"),
    # libjpeg's complaint about a truncated file, printed by every decode of it (the data check
    # and each epoch); the check reports the file by path, and training never sees it.
    re.compile(rb"^[EW]\d{4} [\d:. ]+\d+ jpeg_mem\.cc:\d+\] Premature end of JPEG data"),
    re.compile(rb"^W\d{4} [\d:. ]+\d+ local_rendezvous\.cc:\d+\] Local rendezvous is aborting with "
               rb"status: INVALID_ARGUMENT: jpeg::Uncompress failed"),
)


def is_noise(line: bytes) -> bool:
    """True for a native start-up line of TensorFlow that says nothing about the user's work."""
    return bool(_ABSL_INFO.match(line)) or any(pattern.match(line) for pattern in _NOISE)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Forward file descriptor 2 through a filter that drops `is_noise` lines."""
    if os.environ.get("RESTRANSFER_NATIVE_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError):  # no usable stderr descriptor: nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, original), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end held by this process
        forwarder.join(timeout=5)
        os.close(original)


def _forward(read_end: int, target: int) -> None:
    pending = b""
    with open(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            kept = b"".join(line + b"\n" for line in lines if not is_noise(line))
            if pending and not _MAYBE_NOISE.match(pending):
                kept, pending = kept + pending, b""
            if kept:
                os.write(target, kept)
    if pending and not is_noise(pending):
        os.write(target, pending)
