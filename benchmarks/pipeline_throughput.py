"""Input pipeline throughput: restransfer's load_data vs keras.utils.image_dataset_from_directory.

Both read the same folder of generated JPEGs (random sizes 256-500 px, quality 90) at the same
image size and batch size, with AUTOTUNE parallel decoding, in one process; files are in the OS
page cache for everyone, so "cold" measures decoding, not the disk. Per pipeline:

- ``cold``: from nothing to the end of the first epoch. For restransfer that is ``load_data``
  (listing, the dataset check with its per-file verdicts cached, as on every run after the
  first) plus the first epoch; for Keras, ``image_dataset_from_directory`` plus its first epoch.
- ``first_run`` (restransfer only): the same with an empty verdict cache, so the check decodes
  every file once more (what the very first run on a dataset pays).
- ``cached``: a later epoch (restransfer caches in memory by default; Keras gets ``.cache()``).
- ``first_batch_s``: how long the first epoch takes to yield its first batch (training waits).

Keras rows: its default (bilinear resize without antialiasing, a 256-path shuffle window, cached
batches replayed in the same order every epoch); ``interpolation="area"`` (the same resize work
as ours); and per-image cache plus a whole-set shuffle (the same per-epoch reshuffle as ours).
Rounds are interleaved and rotated (each round runs every pipeline, starting with a different
one) and the best round of each is kept, so load from other processes hits all alike; CPU
seconds (all threads of this process) are reported too. ``stages_cpu_s`` splits the cold cost:
read, decode, resize, and the check.

    .venv/bin/python benchmarks/pipeline_throughput.py --images 2000 --image-size 224 --rounds 5

Writes benchmarks/results/pipeline_cpu.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "pipeline_cpu.json"


def make_jpegs(root: Path, num_images: int, classes: int = 10, min_side: int = 256,
               max_side: int = 500, seed: int = 0) -> Path:
    """``root/class_k/i.jpg``: smooth random photos-like JPEGs (quality 90), reused if present."""
    from PIL import Image

    marker = root / f".made-{num_images}-{classes}-{min_side}-{max_side}-{seed}"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        width, height = rng.integers(min_side, max_side + 1, size=2)
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((int(width), int(height)), Image.BICUBIC)
        noise = rng.integers(-12, 13, (height, width, 3))
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)
    marker.touch()
    return root


class _Clock:
    """Wall and process CPU seconds since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def _epoch(ds, clock: _Clock | None = None) -> dict:
    """Iterate one epoch; times from ``clock`` (default: now) to the first batch and the end."""
    clock = clock or _Clock()
    count, first = 0, None
    for images, _ in ds:
        count += int(images.shape[0])
        if first is None:
            first = clock.read()[0]
    wall, cpu = clock.read()
    return {"wall": wall, "cpu": cpu, "first_batch": first, "images": count}


def _warm_page_cache(root: Path) -> None:
    for path in root.rglob("*.jpg"):
        path.read_bytes()


def machine_info() -> dict:
    import keras
    import tensorflow as tf

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__}


def run_benchmark(data_dir: Path, num_images: int = 2000, image_size: int = 224,
                  batch_size: int = 32, cached_epochs: int = 2, rounds: int = 5,
                  out: Path | None = RESULTS, min_side: int = 256, max_side: int = 500) -> dict:
    """Time every pipeline on the same files; return (and save to ``out``) the JSON result."""
    import keras
    import tensorflow as tf

    from restransfer.data import load_data

    root = make_jpegs(Path(data_dir) / "train", num_images, min_side=min_side, max_side=max_side)
    # Validation files outside the timed set, so every pipeline's epoch is the same 2000 files.
    val = make_jpegs(Path(data_dir) / "val", 10, min_side=min_side, max_side=max_side, seed=1)
    _warm_page_cache(root)
    size = (image_size, image_size)
    verdicts = Path(tempfile.mkdtemp(prefix="rt_check_"))
    previous = os.environ.get("RESTRANSFER_CACHE_DIR")

    chosen = {}

    def ours(fresh_check: bool):
        os.environ["RESTRANSFER_CACHE_DIR"] = (tempfile.mkdtemp(prefix="rt_check_", dir=verdicts)
                                               if fresh_check else str(verdicts / "warm"))
        data = load_data(source="folder", path=root, val_path=val, image_size=list(size),
                         batch_size=batch_size, seed=0)
        chosen["cache"] = data.cache["train"]
        return data.train

    def keras_ds(interpolation: str = "bilinear", reshuffle: bool = False):
        ds = keras.utils.image_dataset_from_directory(
            root, image_size=size, batch_size=None if reshuffle else batch_size,
            label_mode="categorical", shuffle=True, seed=0, interpolation=interpolation,
            verbose=False)
        if reshuffle:  # cache images, reshuffle them every epoch: the same guarantee as ours
            ds = ds.cache().shuffle(num_images, seed=0).batch(batch_size)
        else:
            ds = ds.cache()
        return ds.prefetch(tf.data.AUTOTUNE)

    pipelines = {
        "restransfer": lambda: ours(False),
        "restransfer_first_run": lambda: ours(True),
        "keras_default_bilinear": keras_ds,
        "keras_area": lambda: keras_ds("area"),
        "keras_reshuffled_each_epoch": lambda: keras_ds(reshuffle=True),
    }
    ours(False)  # fills the warm verdict cache
    timings: dict[str, dict[str, list]] = {n: {"cold": [], "cached": []} for n in pipelines}
    names = list(pipelines)
    for round_index in range(rounds):
        for name in names[round_index % len(names):] + names[:round_index % len(names)]:
            clock = _Clock()
            ds = pipelines[name]()
            timings[name]["cold"].append(_epoch(ds, clock))
            if name != "restransfer_first_run":  # its later epochs are restransfer's
                timings[name]["cached"] += [_epoch(ds) for _ in range(cached_epochs)]
    stages = profile_stages(root, size, rounds=max(1, min(rounds, 3)))
    if previous is None:
        os.environ.pop("RESTRANSFER_CACHE_DIR", None)
    else:
        os.environ["RESTRANSFER_CACHE_DIR"] = previous
    shutil.rmtree(verdicts, ignore_errors=True)

    results = {}
    for name, runs in timings.items():
        cold = min(runs["cold"], key=lambda r: r["wall"])
        assert all(r["images"] == num_images for r in runs["cold"] + runs["cached"]), name
        row = {"cold_images_per_s": round(num_images / cold["wall"], 1),
               "cold_epoch_s": round(cold["wall"], 3),
               "cold_cpu_s_median": round(float(np.median([r["cpu"] for r in runs["cold"]])), 3),
               "first_batch_s": round(min(r["first_batch"] for r in runs["cold"]), 3),
               "cold_epoch_s_all": [round(r["wall"], 2) for r in runs["cold"]]}
        if runs["cached"]:
            cached = min(runs["cached"], key=lambda r: r["wall"])
            row.update({"cached_images_per_s": round(num_images / cached["wall"], 1),
                        "cached_epoch_s": round(cached["wall"], 3)})
        results[name] = row
    ours_r = results["restransfer"]

    def ratio(name: str, key: str) -> float:
        return round(ours_r[key] / results[name][key], 3)

    result = {
        "benchmark": "pipeline_throughput",
        "images": num_images, "rounds": rounds, "cached_epochs_per_round": cached_epochs,
        "image_size": [image_size, image_size], "batch_size": batch_size,
        "source_sizes_px": [min_side, max_side], "jpeg_quality": 90,
        "restransfer_cache": chosen["cache"],
        "results": results,
        "ours_over_keras_cold": {name: ratio(name, "cold_images_per_s") for name in results
                                 if name.startswith("keras")},
        "ours_over_keras_cached": {name: ratio(name, "cached_images_per_s") for name in results
                                   if name.startswith("keras")},
        "stages_cpu_s": stages,
        "notes": "Best wall time of interleaved, rotated rounds per pipeline; CPU seconds are the "
                 "median over rounds of all threads of this process. restransfer's cold "
                 "includes load_data (listing and the dataset check from its verdict cache); "
                 "restransfer_first_run also decodes every file in the check (empty verdict "
                 "cache). restransfer downscales with area averaging (antialiased); Keras' "
                 "default is bilinear without antialiasing, keras_area does the same resize as "
                 "ours. Keras' default replays the same cached batches in the same order every "
                 "epoch; restransfer and keras_reshuffled_each_epoch reshuffle images every "
                 "epoch.",
        "command": (f".venv/bin/python benchmarks/pipeline_throughput.py --images {num_images} "
                    f"--image-size {image_size} --batch-size {batch_size} --rounds {rounds}"),
        "machine": machine_info(),
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def profile_stages(root: Path, size: tuple[int, int], rounds: int = 3) -> dict:
    """Median CPU seconds of each cold step over every file (parallel tf.data, AUTOTUNE).

    Each row adds one step to the previous ones; ``check_*`` are the dataset check's parts
    (headers and hashes, then a full decode of every file) that a first run pays.
    """
    import tensorflow as tf

    from restransfer.data.check import _inspect, file_decode_errors
    from restransfer.data.image_ops import decode_image, resize_for_eval

    paths = sorted(str(p) for p in root.rglob("*.jpg"))

    def mapped(fn):
        # Keep one pixel: a static output shape alone would let Grappler prune the decode.
        ds = tf.data.Dataset.from_tensor_slices(paths)
        ds = ds.map(lambda p: tf.cast(fn(p)[-1, -1], tf.float32),
                    num_parallel_calls=tf.data.AUTOTUNE)
        return lambda: [None for _ in ds.batch(256)]

    def decode(p):
        return decode_image(tf.io.read_file(p))

    def inspect():
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(_inspect, paths))

    steps = {
        "read": mapped(lambda p: tf.reshape(tf.strings.length(tf.io.read_file(p)), [1, 1])),
        "read_decode": mapped(decode),
        "read_decode_resize_area (ours, resize_for_eval)": mapped(
            lambda p: resize_for_eval(decode(p), size)),
        "read_decode_resize_bilinear (keras default)": mapped(
            lambda p: tf.image.resize(decode(p), size, method="bilinear")),
        "check_headers_and_hashes": inspect,
        "check_decode": lambda: file_decode_errors(paths),
    }
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            clock = _Clock()
            step()
            cpu[name].append(clock.read()[1])
    return {name: round(float(np.median(v)), 3) for name, v in cpu.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/restransfer_bench_jpegs"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run_benchmark(args.data_dir, args.images, args.image_size, args.batch_size,
                           rounds=args.rounds, out=args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
