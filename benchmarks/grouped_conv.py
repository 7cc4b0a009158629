"""Is XLA's grouped convolution ResNeXt's bottleneck? Time the 3x3 conv of each stage three ways.

For each ResNeXt-50 32x4d stage shape, forward + backward (``jax.value_and_grad``) of:
``grouped`` (one conv with ``feature_group_count=groups``, what the model uses), ``split``
(one conv per group, concatenated) and ``dense`` (an ungrouped conv of the same width, which
does ``groups`` times the arithmetic: if it is not much slower, grouped conv kernels are poor).
Run under JAX (the GPU path):

    python benchmarks/grouped_conv.py --batch-size 256 --dtype bfloat16 --out benchmarks/results/gpu-grouped-conv.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# (spatial size, width) of the grouped 3x3 conv in each ResNeXt-50 32x4d stage at 224 px.
STAGES = ((56, 128), (28, 256), (14, 512), (7, 1024))


def time_fn(fn, *args, steps: int) -> tuple[float, float]:
    """(compile + first call seconds, median seconds of ``steps`` later calls)."""
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def conv_variants(groups: int):
    import jax
    import jax.numpy as jnp
    from jax import lax

    dims = ("NHWC", "HWIO", "NHWC")

    def grouped(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims, feature_group_count=groups)

    def split(x, w):
        xs = jnp.split(x, groups, axis=-1)
        ws = jnp.split(w, groups, axis=-1)
        return jnp.concatenate([lax.conv_general_dilated(a, b, (1, 1), "SAME", dimension_numbers=dims)
                                for a, b in zip(xs, ws)], axis=-1)

    def dense(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)

    def train(conv):
        return jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(conv(x, w).astype(jnp.float32)), argnums=(0, 1)))

    return {"grouped": train(grouped), "split": train(split), "dense": train(dense)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--groups", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scale", type=int, default=1, help="divide spatial sizes by this (smoke runs)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    import jax

    variants = conv_variants(args.groups)
    key = jax.random.PRNGKey(0)
    records = []
    for size, width in STAGES:
        size = max(size // args.scale, 1)
        x = jax.random.normal(key, (args.batch_size, size, size, width), args.dtype)
        w_grouped = jax.random.normal(key, (3, 3, width // args.groups, width), args.dtype)
        w_dense = jax.random.normal(key, (3, 3, width, width), args.dtype)
        row = {"spatial": size, "width": width, "groups": args.groups, "batch_size": args.batch_size,
               "dtype": args.dtype, "device": jax.devices()[0].device_kind}
        for name, fn in variants.items():
            w = w_dense if name == "dense" else w_grouped
            row[f"{name}_compile_s"], median = time_fn(fn, x, w, steps=args.steps)
            row[f"{name}_ms"] = median * 1e3
        row["grouped_vs_dense"] = row["grouped_ms"] / row["dense_ms"]
        records.append(row)
        print(f"{size}x{size}x{width}: grouped {row['grouped_ms']:.2f} ms, split {row['split_ms']:.2f} ms, "
              f"dense (x{args.groups} FLOPs) {row['dense_ms']:.2f} ms")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"settings": vars(args), "results": records}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
