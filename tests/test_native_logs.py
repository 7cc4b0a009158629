"""The command line drops TensorFlow's native start-up chatter from stderr and keeps the rest."""

import subprocess
import sys
import textwrap

from restransfer.native_logs import is_noise

# Lines TensorFlow 2.21 printed on this machine's stderr before absl read any log level.
NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1795448509.071971    4323 port.cc:153] oneDNN custom operations are on.",
    b"I0000 00:00:1795448509.073609    4323 cudart_stub.cc:31] Could not find cuda drivers on "
    b"your machine, GPU will not be used.",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.",
    b"E0000 00:00:1795448457.325916    4179 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    # A truncated JPEG, decoded by the data check (which reports it by path) and by training.
    b"E0000 00:00:1796174261.152966   22756 jpeg_mem.cc:331] Premature end of JPEG data. Stopped at line 94/200",
    b"W0000 00:00:1796174216.362106   21840 local_rendezvous.cc:412] Local rendezvous is aborting with "
    b"status: INVALID_ARGUMENT: jpeg::Uncompress failed. Invalid JPEG data or crop window.",
]
KEPT = [
    b"error: Recipe file x.yaml does not exist (or is not a file).",
    b"Traceback (most recent call last):",
    b"W0000 00:00:1795446467.038128   29887 cache_dataset_ops.cc:912] The calling iterator did "
    b"not fully read the dataset being cached.",
    b"E0000 00:00:1795446467.038128   29887 some_op.cc:12] INTERNAL: a real failure",
    b"W0000 00:00:1796174216.362106   21840 local_rendezvous.cc:412] Local rendezvous is aborting with "
    b"status: RESOURCE_EXHAUSTED: OOM when allocating tensor",
    b"UserWarning: I0000 is not at the start of this line",
]


def test_noise_patterns():
    assert all(is_noise(line) for line in NOISE)
    assert not any(is_noise(line) for line in KEPT)


def test_filter_keeps_order_native_writes_and_child_processes():
    script = textwrap.dedent(f"""
        import os, subprocess, sys
        from restransfer.native_logs import filtered_stderr
        noise, kept = {NOISE!r}, {KEPT!r}
        with filtered_stderr():
            for a, b in zip(noise, kept):
                os.write(2, a + b"\\n")          # native code writes to the descriptor
                print(b.decode(), file=sys.stderr)  # Python writes through sys.stderr
            subprocess.run([sys.executable, "-c", "import os; os.write(2, {NOISE[1]!r} + b'\\\\nchild\\\\n')"])
            os.write(2, b"no newline at the end")
        print("after", file=sys.stderr)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.split(b"\n")
    assert lines == KEPT + [b"child", b"no newline at the endafter", b""]


def test_opt_out_shows_everything():
    script = ("import os\nfrom restransfer.native_logs import filtered_stderr\n"
              f"with filtered_stderr():\n    os.write(2, {NOISE[0]!r})\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                          env={**__import__("os").environ, "RESTRANSFER_NATIVE_LOGS": "1"})
    assert done.stderr == NOISE[0]
