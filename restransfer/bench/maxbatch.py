"""The largest training batch that fits: each try in a fresh process, so an OOM leaves no debris."""

from __future__ import annotations

import os
import subprocess
import sys

from restransfer.errors import RestransferError

_OOM_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory", "OOM", "Out of memory")


def fits(model: str, batch_size: int, *, image_size: int, precision: str, style: str = "torchvision",
         timeout: int = 600) -> bool:
    """Whether two training steps of ``model`` at ``batch_size`` run without running out of memory.

    Raises:
        RestransferError: the try failed for a reason other than memory (the message has the
            end of its output).
    """
    command = [
        sys.executable, "-m", "restransfer", "bench", "train", "--models", model, "--style", style,
        "--image-size", str(image_size), "--batch-size", str(batch_size), "--precision", precision,
        "--jit-compile", "true", "--no-reference", "--steps", "1", "--rounds", "1", "--warmup", "1",
    ]
    # JAX preallocates 75% of the GPU by default; the largest batch should use all of it.
    env = {**os.environ, "XLA_PYTHON_CLIENT_MEM_FRACTION": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")}
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return False
    if result.returncode == 0:
        return True
    output = result.stdout + result.stderr
    if any(marker in output for marker in _OOM_MARKERS):
        return False
    raise RestransferError(f"A training try of {model} at batch {batch_size} failed, not for memory:\n"
                           + output[-2000:])


def largest_batch(model: str, *, image_size: int = 224, precision: str = "mixed_bfloat16",
                  start: int = 256, limit: int = 4096, timeout: int = 600, log=print) -> dict:
    """Double from ``start`` until a batch does not fit, then bisect to a multiple of ``start // 4``.

    Returns:
        ``{"model", "image_size", "precision", "largest_batch", "first_failure", "tries"}``;
        ``largest_batch`` is None when even ``start`` does not fit (then try a smaller start).
    """
    log = log or (lambda *_: None)
    tries: dict[int, bool] = {}

    def attempt(batch: int) -> bool:
        tries[batch] = fits(model, batch, image_size=image_size, precision=precision, timeout=timeout)
        log(f"{model} batch {batch}: {'fits' if tries[batch] else 'does not fit'}")
        return tries[batch]

    good, bad, batch = None, None, start
    while batch <= limit:
        if not attempt(batch):
            bad = batch
            break
        good, batch = batch, batch * 2
    step = max(start // 4, 1)
    if good is not None and bad is not None:
        while bad - good > step:
            middle = (good + bad) // 2 // step * step or good + step
            if middle in (good, bad):
                break
            if attempt(middle):
                good = middle
            else:
                bad = middle
    return {"model": model, "image_size": image_size, "precision": precision, "largest_batch": good,
            "first_failure": bad, "tries": dict(sorted(tries.items()))}
