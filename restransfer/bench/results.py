"""Result records: side-by-side ratios, model FLOPs utilisation, JSON files and a table."""

from __future__ import annotations

import datetime
import json
import statistics
from collections.abc import Iterable
from pathlib import Path

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by device-name substring.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}
OURS = "restransfer"


def train_flops_per_image(macs_per_image: int) -> float:
    """Training FLOPs of one image: forward = 2 x multiply-adds, backward ~ 2 x forward."""
    return 3 * 2 * float(macs_per_image)


def peak_flops(device: str, override_tflops: float | None = None) -> float | None:
    """The bf16 dense peak of ``device`` in FLOP/s, ``override_tflops`` if given, else None."""
    if override_tflops:
        return override_tflops * 1e12
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in device), None)


def mfu(img_per_s: float, macs_per_image: int, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s over the device's peak.

    Example:
        >>> round(mfu(3000, 4_100_000_000, 989e12), 3)
        0.075
    """
    if not peak:
        return None
    return img_per_s * train_flops_per_image(macs_per_image) / peak


def add_ratios(records: list[dict]) -> list[dict]:
    """Set ``ratio_to_reference`` (our images/s over the reference's) on every record.

    Records pair up by ``case``; the reference row of a case gets 1.0 and rows without a
    reference in their case get None. Where both rows carry ``round_step_ms`` (the median step
    of each round), ``paired_ratio`` is the median over rounds of the reference's step time
    over ours in the same round: adjacent in time, so a slow spell of the machine cancels.

    Example:
        >>> rows = [{"case": "a", "implementation": "restransfer", "img_per_s": 95.0},
        ...         {"case": "a", "implementation": "keras.applications", "img_per_s": 100.0}]
        >>> [r["ratio_to_reference"] for r in add_ratios(rows)]
        [0.95, 1.0]
    """
    references = {r["case"]: r for r in records if r["implementation"] != OURS}
    for record in records:
        reference = references.get(record["case"])
        if reference is None or not reference.get("img_per_s"):
            record["ratio_to_reference"] = None
        else:
            record["ratio_to_reference"] = round(record["img_per_s"] / reference["img_per_s"], 4)
        ours_rounds = record.get("round_step_ms")
        reference_rounds = (reference or {}).get("round_step_ms")
        if ours_rounds and reference_rounds and len(ours_rounds) == len(reference_rounds):
            record["paired_ratio"] = round(statistics.median(
                r / o for o, r in zip(ours_rounds, reference_rounds)), 4)
        else:
            record["paired_ratio"] = None
    return records


def environment() -> dict:
    """Versions, the date and the CPU, stored with every results file (CPU timings and, through
    its kernels, CPU results depend on the machine)."""
    import os
    import platform

    import keras

    env = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    if env["backend"] == "jax":
        import jax

        env["jax"] = jax.__version__
    elif env["backend"] == "tensorflow":
        import tensorflow as tf

        env["tensorflow"] = tf.__version__
    return env


def _cpu_model() -> str:
    """The CPU's model name (Linux' /proc/cpuinfo), else what ``platform`` knows."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command_line() -> str:
    """The command that is running, as a user would type it again (the docs' Benchmarks page
    prints it beside each results file)."""
    import shlex
    import sys

    program = Path(sys.argv[0]).name
    if program in ("restransfer", "__main__.py"):
        return shlex.join(["restransfer", *sys.argv[1:]])
    return shlex.join(["python", *sys.argv])


def write_results(path: str | Path, records: Iterable[dict], *, settings: dict | None = None,
                  notes: str = "") -> Path:
    """Write ``{"command", "environment", "settings", "notes", "results"}`` as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command_line(), "environment": environment(), "settings": settings or {},
               "notes": notes, "results": list(records)}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


COLUMNS = (
    ("model", "model", "{}"),
    ("implementation", "implementation", "{}"),
    ("precision", "precision", "{}"),
    ("jit_compile", "XLA", "{}"),
    ("batch_size", "batch", "{}"),
    ("image_size", "px", "{}"),
    ("img_per_s", "img/s", "{:,.1f}"),
    ("step_ms_median", "step ms (median)", "{:,.1f}"),
    ("fit_img_per_s", "img/s (no per-step wait)", "{:,.1f}"),
    ("compile_s", "compile s", "{:.1f}"),
    ("peak_memory_mb", "peak MiB", "{:,.0f}"),
    ("ratio_to_reference", "vs reference", "{:.3f}"),
    ("paired_ratio", "paired", "{:.3f}"),
    ("mfu", "MFU", "{:.1%}"),
)


def markdown_table(records: Iterable[dict]) -> str:
    """A README-ready markdown table of training records (missing values print as ``-``)."""
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for record in records:
        cells = []
        for key, _, fmt in COLUMNS:
            value = record.get(key)
            cells.append("-" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
