"""Input pipeline throughput: restransfer's tf.data vs keras.utils.image_dataset_from_directory.

Both read the same folder of generated JPEGs (random sizes 256-500 px) at the same image size
and batch size, side by side in one process. "cold" is the first epoch (read, decode, resize;
files already in the OS page cache for both, so it measures decoding, not the disk); "cached"
is a later epoch after ``.cache()`` (ours caches by default; Keras gets ``.cache()`` appended).
Neither side augments. Also timed: restransfer's dataset check, first run and cached.

    .venv/bin/python benchmarks/pipeline_throughput.py --images 2000 --image-size 224

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


def _epoch(ds) -> tuple[float, int]:
    start, count = time.perf_counter(), 0
    for images, _ in ds:
        count += int(images.shape[0])
    return time.perf_counter() - start, count


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
                  batch_size: int = 32, cached_epochs: int = 2, rounds: int = 3, out: Path | None = RESULTS,
                  min_side: int = 256, max_side: int = 500) -> dict:
    """Time both pipelines on the same files; return (and save to ``out``) the JSON result."""
    import keras
    import tensorflow as tf

    from restransfer.data.check import inspect_listing
    from restransfer.data.pipeline import _cache_plan, build_dataset
    from restransfer.data.sources import folder_listing

    root = make_jpegs(Path(data_dir), num_images, min_side=min_side, max_side=max_side)
    _warm_page_cache(root)
    size = (image_size, image_size)
    listing = folder_listing(root, None, None, None, seed=0)
    part = listing.parts["train"]

    # A fresh verdict cache, so the first check really decodes every file.
    previous = os.environ.get("RESTRANSFER_CACHE_DIR")
    os.environ["RESTRANSFER_CACHE_DIR"] = tempfile.mkdtemp(prefix="rt_check_")
    start = time.perf_counter()
    inspect_listing(listing)
    check_first = time.perf_counter() - start
    start = time.perf_counter()
    inspect_listing(listing)
    check_cached = time.perf_counter() - start
    shutil.rmtree(os.environ["RESTRANSFER_CACHE_DIR"], ignore_errors=True)
    if previous is None:
        del os.environ["RESTRANSFER_CACHE_DIR"]
    else:
        os.environ["RESTRANSFER_CACHE_DIR"] = previous

    # What load_data would choose for this split with `cache: auto`.
    cache, as_uint8 = _cache_plan("auto", part, size, training=True, run_dir=None)

    def ours():
        return build_dataset(part, len(listing.class_names), size, batch_size, training=True,
                             cache=cache, cache_uint8=as_uint8, seed=0)

    def theirs():
        ds = keras.utils.image_dataset_from_directory(
            root, image_size=size, batch_size=batch_size, label_mode="categorical",
            shuffle=True, seed=0, verbose=False)
        return ds.cache().prefetch(tf.data.AUTOTUNE)

    def theirs_reshuffled():
        # The same per-epoch guarantee as ours: cache images, reshuffle images every epoch.
        ds = keras.utils.image_dataset_from_directory(
            root, image_size=size, batch_size=None, label_mode="categorical",
            shuffle=True, seed=0, verbose=False)
        return (ds.cache().shuffle(len(part), seed=0).batch(batch_size)
                .prefetch(tf.data.AUTOTUNE))

    pipelines = {"restransfer": ours, "keras_image_dataset_from_directory": theirs,
                 "keras_reshuffled_each_epoch": theirs_reshuffled}
    timings: dict[str, dict[str, list[float]]] = {n: {"cold": [], "cached": []} for n in pipelines}
    # Interleaved rounds, best of each: start-up costs and a busy machine hit all pipelines alike.
    for _ in range(rounds):
        for name, make in pipelines.items():
            ds = make()
            cold, count = _epoch(ds)
            timings[name]["cold"].append(cold)
            timings[name]["cached"] += [_epoch(ds)[0] for _ in range(cached_epochs)]
    results = {}
    for name, times in timings.items():
        cold, cached = min(times["cold"]), min(times["cached"])
        results[name] = {"cold_images_per_s": round(count / cold, 1),
                         "cached_images_per_s": round(count / cached, 1),
                         "cold_epoch_s": round(cold, 3), "cached_epoch_s": round(cached, 3),
                         "images": count}
    ours_r, keras_r = results["restransfer"], results["keras_image_dataset_from_directory"]
    result = {
        "benchmark": "pipeline_throughput",
        "images": num_images, "rounds": rounds, "image_size": [image_size, image_size], "batch_size": batch_size,
        "source_sizes_px": [min_side, max_side], "jpeg_quality": 90,
        "restransfer_cache": f"{cache} ({'uint8' if as_uint8 else 'float32'})",
        "results": results,
        "speedup_cold": round(ours_r["cold_images_per_s"] / keras_r["cold_images_per_s"], 3),
        "speedup_cached": round(ours_r["cached_images_per_s"] / keras_r["cached_images_per_s"], 3),
        "speedup_cached_vs_reshuffled": round(
            ours_r["cached_images_per_s"]
            / results["keras_reshuffled_each_epoch"]["cached_images_per_s"], 3),
        "check_first_s": round(check_first, 3), "check_cached_s": round(check_cached, 3),
        "notes": "Files are in the OS page cache for every pipeline. Keras caches float32 "
                 "batches, so its cached epochs replay the same batches in the same order; "
                 "keras_reshuffled_each_epoch and restransfer reshuffle images every epoch. "
                 "restransfer downscales with area averaging (antialiased), Keras with plain "
                 "bilinear.",
        "machine": machine_info(),
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/restransfer_bench_jpegs"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run_benchmark(args.data_dir, args.images, args.image_size, args.batch_size,
                           out=args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
