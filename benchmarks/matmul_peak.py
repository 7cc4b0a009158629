"""The device's measured bf16 matrix-multiply rate: the ceiling that model FLOP utilisation uses.

A datasheet peak is not what a kernel reaches on random data; MFU against the measured rate says
how far a training step is from what this device really does. JAX (the GPU path) times an
``n x n x n`` bf16 product after warm-up, each timed call synchronised.

    KERAS_BACKEND=jax python benchmarks/matmul_peak.py --size 8192 --out benchmarks/results/gpu-matmul.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def measure(size: int, repeats: int, warmup: int) -> dict:
    import jax
    import jax.numpy as jnp

    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (size, size), dtype=jnp.bfloat16)
    b = jax.random.normal(key_b, (size, size), dtype=jnp.bfloat16)
    matmul = jax.jit(lambda x, y: x @ y)
    for _ in range(warmup):
        matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    device = jax.devices()[0]
    return {
        "device": device.device_kind, "platform": device.platform, "jax": jax.__version__,
        "size": size, "dtype": "bfloat16", "repeats": repeats, "warmup": warmup,
        "ms_median": median * 1e3, "ms_min": min(times) * 1e3,
        "tflops_median": 2 * size**3 / median / 1e12,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    record = measure(args.size, args.repeats, args.warmup)
    print(f"{record['device']}: bf16 {args.size}^3 matmul {record['tflops_median']:.1f} TFLOP/s "
          f"(median of {args.repeats})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        payload = {"date": time.strftime("%Y-%m-%d"), "settings": vars(args), "results": [record]}
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
