"""Input pipeline throughput: restransfer's load_data vs keras.utils.image_dataset_from_directory.

Both read the same folder of generated JPEGs (random sizes 256-500 px, quality 90) at the same
image size and batch size, with AUTOTUNE parallel decoding. Every cold measurement runs in a
fresh Python process (a training run starts in one), timed from after the imports and
TensorFlow's one-time start-up (one decode, one variable), with the files already in the OS page
cache: "cold" measures decoding, not the disk. Per pipeline:

- ``cold``: from nothing to the end of the first epoch. For restransfer that is ``load_data``
  (listing, the dataset check with its per-file verdicts cached, as on every run after the
  first) plus the first epoch; for Keras, ``image_dataset_from_directory`` plus its first epoch.
- ``first_run`` (restransfer only): the same with an empty verdict cache, so the check decodes
  every file (into the in-memory store: epoch 1 then only gathers).
- ``cached``: later epochs in the same process (restransfer caches in memory by default; Keras
  gets ``.cache()``).
- ``first_batch_s``: how long the first epoch takes to yield its first batch (training waits):
  the pipeline's fixed start-up. ``after_first_batch_images_per_s`` is the rest of the cold
  epoch, the decoding rate that large datasets see.

Rows come in like-for-like pairs. ``data.resize: bilinear`` is exactly Keras' default resize
(bilinear without antialiasing; pixel-equal, tested); ``area`` (our default) is the same as
Keras' ``interpolation="area"``. ``keras_reshuffled_each_epoch`` caches images and reshuffles
them every epoch (the guarantee ours gives; Keras' default replays the same cached batches).
Rounds are interleaved and rotated, and the best round of each pipeline is kept, so load from
other processes hits all alike; CPU seconds (all threads of the worker) are reported too.
``paired_cold`` is the median over rounds of the Keras row's cold time over ours in the same
round (> 1: ours faster), the steadier number on a shared machine.
``stages_cpu_s`` splits the cold cost: read, decode, resize, and the check. ``resize_fidelity``
compares both resizes with PIL's antialiased bilinear, the resize torchvision and timm weights
were trained with, on scikit-learn's two bundled photographs.

    .venv/bin/python benchmarks/pipeline_throughput.py --images 2000 --image-size 224 --rounds 7

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


PIPELINES = ("restransfer", "restransfer_first_run", "restransfer_bilinear",
             "keras_default_bilinear", "keras_area", "keras_reshuffled_each_epoch")
# ours -> the Keras row doing the same work.
LIKE_FOR_LIKE = {"restransfer": "keras_area", "restransfer_bilinear": "keras_default_bilinear"}


def build_pipeline(name: str, root: Path, val: Path, image_size: int, batch_size: int):
    """The training dataset of pipeline ``name`` (all setup included: call it inside the clock)."""
    import keras
    import tensorflow as tf

    size = (image_size, image_size)
    if name.startswith("restransfer"):
        from restransfer.data import load_data

        data = load_data(source="folder", path=root, val_path=val, image_size=list(size),
                         batch_size=batch_size, seed=0,
                         resize="bilinear" if name.endswith("bilinear") else "area")
        return data.train, data.cache["train"]
    reshuffle = name == "keras_reshuffled_each_epoch"
    ds = keras.utils.image_dataset_from_directory(
        root, image_size=size, batch_size=None if reshuffle else batch_size,
        label_mode="categorical", shuffle=True, seed=0,
        interpolation="area" if name == "keras_area" else "bilinear", verbose=False)
    if reshuffle:  # cache images, reshuffle them every epoch: the same guarantee as ours
        ds = ds.cache().shuffle(len(ds), seed=0).batch(batch_size)
    else:
        ds = ds.cache()
    return ds.prefetch(tf.data.AUTOTUNE), "memory"


def worker(name: str, root: Path, val: Path, image_size: int, batch_size: int,
           cached_epochs: int) -> dict:
    """One cold epoch (plus cached ones) of ``name``, in this fresh process."""
    import keras  # noqa: F401  (imports are not part of a pipeline's cost)
    import tensorflow as tf

    import restransfer.data.pipeline  # noqa: F401
    from restransfer.data.image_ops import decode_image

    # TensorFlow's one-time start-up (first decode, first variable), which every training
    # process pays once whatever its input pipeline: not part of a pipeline's cost.
    first = next(iter(sorted(root.rglob("*.jpg"))))
    decode_image(tf.io.read_file(str(first)))
    tf.Variable(tf.zeros([1], tf.uint8), trainable=False)
    _warm_page_cache(root)
    clock = _Clock()
    ds, cache = build_pipeline(name, root, val, image_size, batch_size)
    cold = _epoch(ds, clock)
    cached = [] if name == "restransfer_first_run" else [_epoch(ds) for _ in range(cached_epochs)]
    return {"cold": cold, "cached": cached, "cache": cache}


def _spawn(name: str, root: Path, val: Path, image_size: int, batch_size: int,
           cached_epochs: int, verdicts: Path) -> dict:
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               RESTRANSFER_CACHE_DIR=str(tempfile.mkdtemp(prefix="rt_check_", dir=verdicts)
                                         if name == "restransfer_first_run"
                                         else verdicts / "warm"))
    command = [sys.executable, __file__, "--worker", name, "--data-dir", str(root.parent),
               "--image-size", str(image_size), "--batch-size", str(batch_size),
               "--cached-epochs", str(cached_epochs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_benchmark(data_dir: Path, num_images: int = 2000, image_size: int = 224,
                  batch_size: int = 32, cached_epochs: int = 2, rounds: int = 5,
                  out: Path | None = RESULTS, min_side: int = 256, max_side: int = 500) -> dict:
    """Time every pipeline on the same files; return (and save to ``out``) the JSON result."""
    root = make_jpegs(Path(data_dir) / "train", num_images, min_side=min_side, max_side=max_side)
    # Validation files outside the timed set, so every pipeline's epoch is the same files.
    val = make_jpegs(Path(data_dir) / "val", 10, min_side=min_side, max_side=max_side, seed=1)
    verdicts = Path(tempfile.mkdtemp(prefix="rt_check_"))
    args = (root, val, image_size, batch_size, cached_epochs, verdicts)
    _spawn("restransfer", *args)  # fills the warm verdict cache
    runs: dict[str, list[dict]] = {name: [] for name in PIPELINES}
    for round_index in range(rounds):
        shift = round_index % len(PIPELINES)
        for name in PIPELINES[shift:] + PIPELINES[:shift]:
            runs[name].append(_spawn(name, *args))
    shutil.rmtree(verdicts, ignore_errors=True)

    results = {}
    for name, measured in runs.items():
        colds = [r["cold"] for r in measured]
        cacheds = [c for r in measured for c in r["cached"]]
        assert all(r["images"] == num_images for r in colds + cacheds), name
        cold = min(colds, key=lambda r: r["wall"])
        rest = max((num_images - batch_size) / (r["wall"] - r["first_batch"]) for r in colds)
        row = {"cold_images_per_s": round(num_images / cold["wall"], 1),
               "after_first_batch_images_per_s": round(rest, 1),
               "cold_epoch_s": round(cold["wall"], 3),
               "cold_cpu_s_median": round(float(np.median([r["cpu"] for r in colds])), 3),
               "first_batch_s": round(min(r["first_batch"] for r in colds), 3),
               "cold_epoch_s_all": [round(r["wall"], 2) for r in colds],
               "cache": measured[0]["cache"]}
        if cacheds:
            cached = min(cacheds, key=lambda r: r["wall"])
            row.update({"cached_images_per_s": round(num_images / cached["wall"], 1),
                        "cached_epoch_s": round(cached["wall"], 3)})
        results[name] = row

    def ratio(ours: str, keras_row: str, key: str) -> float | None:
        if key not in results[ours] or key not in results[keras_row]:
            return None
        return round(results[ours][key] / results[keras_row][key], 3)

    result = {
        "benchmark": "pipeline_throughput",
        "images": num_images, "rounds": rounds, "cached_epochs_per_round": cached_epochs,
        "image_size": [image_size, image_size], "batch_size": batch_size,
        "source_sizes_px": [min_side, max_side], "jpeg_quality": 90,
        "results": results,
        "like_for_like_cold": {f"{ours} / {ref}": ratio(ours, ref, "cold_images_per_s")
                               for ours, ref in LIKE_FOR_LIKE.items()},
        "paired_cold": {f"{ref} / {ours}": round(float(np.median(
            [k["cold"]["wall"] / o["cold"]["wall"] for o, k in zip(runs[ours], runs[ref])])), 3)
            for ours, ref in LIKE_FOR_LIKE.items()},
        "like_for_like_after_first_batch": {
            f"{ours} / {ref}": ratio(ours, ref, "after_first_batch_images_per_s")
            for ours, ref in LIKE_FOR_LIKE.items()},
        "like_for_like_cached": {f"{ours} / {ref}": ratio(ours, ref, "cached_images_per_s")
                                 for ours, ref in LIKE_FOR_LIKE.items()},
        "defaults_cold": {"restransfer / keras_default_bilinear":
                          ratio("restransfer", "keras_default_bilinear", "cold_images_per_s")},
        "reshuffled_cached": {"restransfer / keras_reshuffled_each_epoch":
                              ratio("restransfer", "keras_reshuffled_each_epoch",
                                    "cached_images_per_s")},
        "stages_cpu_s": profile_stages(root, (image_size, image_size),
                                       rounds=max(1, min(rounds, 3))),
        "resize_fidelity": resize_fidelity(),
        "notes": "Each cold epoch runs in a fresh process (after imports and one warm-up "
                 "decode); best wall time of interleaved, rotated rounds per pipeline; CPU "
                 "seconds are the median over rounds of all threads of the worker. "
                 "restransfer's cold includes load_data (listing and the dataset check from "
                 "its verdict cache); restransfer_first_run has an empty verdict cache (the "
                 "check decodes every file into the memory store). Like-for-like pairs do the "
                 "same resize: restransfer (area, our default) with keras_area, "
                 "restransfer_bilinear with Keras' default. Keras' default replays the same "
                 "cached batches in the same order every epoch; restransfer and "
                 "keras_reshuffled_each_epoch reshuffle images every epoch.",
        "command": (f".venv/bin/python benchmarks/pipeline_throughput.py --images {num_images} "
                    f"--image-size {image_size} --batch-size {batch_size} --rounds {rounds}"),
        "machine": machine_info(),
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def resize_fidelity(scales: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0)) -> dict:
    """PSNR (dB) of each ``data.resize`` against PIL's antialiased bilinear, per shrink factor.

    PIL's bilinear (with its built-in antialiasing) is what torchvision's and timm's
    ``Resize`` apply to training images, so it is the reference their weights expect. Images:
    scikit-learn's two bundled photographs (427x640 JPEGs), shrunk by each factor.
    """
    import tensorflow as tf
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from restransfer.data.image_ops import resize_for_eval

    psnr: dict[str, dict[str, list[float]]] = {m: {} for m in ("area", "bilinear")}
    for name in ("china.jpg", "flower.jpg"):
        photo = load_sample_image(name)
        height, width = photo.shape[:2]
        for scale in scales:
            size = (round(height / scale), round(width / scale))
            reference = np.asarray(Image.fromarray(photo).resize(size[::-1], Image.BILINEAR),
                                   np.float64)
            for method in psnr:
                ours = resize_for_eval(tf.constant(photo), size, method).numpy()
                mse = float(np.mean((ours - reference) ** 2))
                psnr[method].setdefault(str(scale), []).append(10 * np.log10(255.0 ** 2 / mse))
    return {"reference": "PIL bilinear (antialiased), as torchvision/timm Resize",
            "images": "sklearn.datasets.load_sample_image china.jpg, flower.jpg",
            "psnr_db_mean_by_shrink_factor": {
                method: {scale: round(float(np.mean(v)), 1) for scale, v in by_scale.items()}
                for method, by_scale in psnr.items()}}


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
        "read_decode_resize_area (data.resize: area)": mapped(
            lambda p: resize_for_eval(decode(p), size, "area")),
        "read_decode_resize_bilinear (data.resize: bilinear = Keras default)": mapped(
            lambda p: resize_for_eval(decode(p), size, "bilinear")),
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
    parser.add_argument("--cached-epochs", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/restransfer_bench_jpegs"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=PIPELINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        timing = worker(args.worker, args.data_dir / "train", args.data_dir / "val",
                        args.image_size, args.batch_size, args.cached_epochs)
        print(json.dumps(timing))
        return
    result = run_benchmark(args.data_dir, args.images, args.image_size, args.batch_size,
                           cached_epochs=args.cached_epochs, rounds=args.rounds, out=args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
