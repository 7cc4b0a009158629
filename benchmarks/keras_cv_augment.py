"""Which keras-cv augmentation layers add something Keras core lacks, and do they run here?

For each candidate layer of keras-cv (AugMix, GridMask, JitteredResize, FourierMix, ...) this
records, per backend (TensorFlow and JAX, each in a fresh process):
  * whether it builds and runs eagerly on a batch (the layer called on arrays, as a model's
    first layer would be),
  * whether it runs inside ``tf.data.Dataset.map`` (where restransfer augments, on every backend),
  * whether importing keras-cv loaded TensorFlow (a JAX-only install has none),
  * the median milliseconds per batch of each path, and the same for the Keras core layer that
    does the same job, where Keras has one.

keras-cv is not a dependency of restransfer; install it beside the project for this measurement:
    pip install --no-deps --target /tmp/kcv keras-cv==0.9.0 kagglehub
    python benchmarks/keras_cv_augment.py --keras-cv-path /tmp/kcv \
        --out benchmarks/results/cpu-keras-cv-augment.json
(``--no-deps``: keras-cv 0.9 still asks for the keras-core preview package, which Keras 3 replaces.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

# keras-cv layer -> (what it does, the Keras core layer doing the same job or None, its kwargs).
CANDIDATES = {
    "AugMix": ("mixes chains of augmentations (Hendrycks et al. 2020)", "AugMix", {"value_range": (0, 255)}),
    "RandAugment": ("random choice of N of 14 operations", "RandAugment", {"value_range": (0, 255)}),
    "RandomCutout": ("erases random rectangles", "RandomErasing", {"value_range": (0, 255)}),
    "GridMask": ("erases a rotated grid of squares (Chen et al. 2020)", None, None),
    "JitteredResize": ("scale jitter: random resize, then a random crop to a fixed size", None, None),
    "FourierMix": ("mixes images with masks from low-pass Fourier noise", None, None),
    "ChannelShuffle": ("permutes the colour channels", None, None),
    "RandomChannelShift": ("adds a random offset per channel", None, None),
    "RandomJpegQuality": ("re-encodes as JPEG at a random quality", None, None),
    "RandomCropAndResize": ("random-area crop resized back (Inception crop)", None, None),
}

CV_KWARGS = {
    "AugMix": {"value_range": (0, 255)},
    "RandAugment": {"value_range": (0, 255)},
    "RandomCutout": {"height_factor": 0.3, "width_factor": 0.3},
    "GridMask": {},
    "JitteredResize": {"target_size": None, "scale_factor": (0.8, 1.25)},
    "FourierMix": {},
    "ChannelShuffle": {},
    "RandomChannelShift": {"value_range": (0, 255), "factor": 0.2},
    "RandomJpegQuality": {"factor": (75, 95)},
    "RandomCropAndResize": {"target_size": None, "crop_area_factor": (0.3, 1.0), "aspect_ratio_factor": (3 / 4, 4 / 3)},
}
# Layers that take (images, labels) dicts: they mix images and their labels.
NEEDS_LABELS = {"FourierMix"}


def _child(args) -> dict:
    """Measure every candidate on the backend this process was started with."""
    modules_before = set(sys.modules)
    sys.path.insert(0, args.keras_cv_path) if args.keras_cv_path else None
    import keras
    import numpy as np

    started = time.perf_counter()
    try:
        import keras_cv
    except Exception as error:  # noqa: BLE001 - recorded, the parent decides
        return {"backend": keras.backend.backend(), "import_error": f"{type(error).__name__}: {error}"}
    import_s = time.perf_counter() - started
    tf_loaded = "tensorflow" in sys.modules and "tensorflow" not in modules_before
    import tensorflow as tf

    rng = np.random.default_rng(0)
    size = args.image_size
    images = rng.uniform(0, 255, (args.batch, size, size, 3)).astype("float32")
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, args.batch)]

    def timed(fn) -> tuple[float, object]:
        out, times = None, []
        for _ in range(args.rounds + 1):  # the first call traces or compiles: not counted
            start = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times[1:]) * 1000), out

    def check(out) -> str | None:
        out = out["images"] if isinstance(out, dict) else out
        out = np.asarray(keras.ops.convert_to_numpy(out) if not hasattr(out, "numpy") else out.numpy())
        if out.shape != images.shape:
            return f"output shape {out.shape} != input {images.shape}"
        if not np.all(np.isfinite(out)):
            return "non-finite output"
        return None

    def run_paths(layer, with_labels: bool) -> dict:
        result = {}
        payload = {"images": images, "labels": labels} if with_labels else images
        try:
            ms, out = timed(lambda: layer(payload, training=True) if not with_labels else layer(payload))
            result.update(eager_ok=check(out) is None, eager_problem=check(out), eager_ms=round(ms, 2))
        except Exception as error:  # noqa: BLE001
            result.update(eager_ok=False, eager_problem=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}")
        try:
            ds = tf.data.Dataset.from_tensors(
                {"images": images, "labels": labels} if with_labels else images).repeat(args.rounds + 1)
            ds = ds.map(lambda x: layer(x, training=True) if not with_labels else layer(x))
            batches = iter(ds)
            ms, out = timed(lambda: next(batches))
            result.update(tf_data_ok=check(out) is None, tf_data_problem=check(out), tf_data_ms=round(ms, 2))
        except Exception as error:  # noqa: BLE001
            result.update(tf_data_ok=False,
                          tf_data_problem=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}")
        return result

    rows = {}
    for name, (what, core, core_kwargs) in CANDIDATES.items():
        kwargs = dict(CV_KWARGS[name])
        for key in ("target_size",):
            if key in kwargs:
                kwargs[key] = (size, size)
        if name == "JitteredResize":
            kwargs["bounding_box_format"] = "xyxy"
        row = {"does": what, "keras_core_equivalent": core}
        try:
            layer = getattr(keras_cv.layers, name)(**kwargs)
            row["keras_cv"] = run_paths(layer, name in NEEDS_LABELS)
        except Exception as error:  # noqa: BLE001
            row["keras_cv"] = {"build_error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
        if core is not None:
            row["keras_core"] = run_paths(getattr(keras.layers, core)(**core_kwargs), False)
        rows[name] = row
    return {"backend": keras.backend.backend(), "keras": keras.__version__, "keras_cv": keras_cv.__version__,
            "import_s": round(import_s, 2), "keras_cv_import_loads_tensorflow": tf_loaded, "layers": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keras-cv-path", default=None, help="folder keras-cv was installed into (--target)")
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(_child(args)))
        return
    results = []
    for backend in args.backends:
        command = [sys.executable, __file__, "--child", "--batch", str(args.batch), "--image-size",
                   str(args.image_size), "--rounds", str(args.rounds)]
        if args.keras_cv_path:
            command += ["--keras-cv-path", args.keras_cv_path]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"})
        line = next((text for text in done.stdout.splitlines() if text.startswith("RESULT ")), None)
        results.append(json.loads(line[7:]) if line else {"backend": backend, "failed": done.stderr[-2000:]})
    record = {"benchmark": "keras_cv_augment", "command": " ".join(sys.argv), "machine": platform.processor()
              or platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
              "settings": {"batch": args.batch, "image_size": args.image_size, "rounds": args.rounds},
              "results": results}
    text = json.dumps(record, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    for result in results:
        print(f"backend {result['backend']}: keras-cv import loads TensorFlow: "
              f"{result.get('keras_cv_import_loads_tensorflow')}")
        for name, row in result.get("layers", {}).items():
            cv = row["keras_cv"]
            core = row.get("keras_core", {})
            print(f"  {name:20s} eager {cv.get('eager_ok')!s:5s} {cv.get('eager_ms', '-')!s:>8} ms  "
                  f"tf.data {cv.get('tf_data_ok')!s:5s} {cv.get('tf_data_ms', '-')!s:>8} ms  "
                  f"core {row['keras_core_equivalent'] or '-'}: {core.get('tf_data_ms', '-')} ms"
                  + (f"  [{cv.get('eager_problem') or cv.get('build_error') or ''}]"
                     if not cv.get("eager_ok") else ""))


if __name__ == "__main__":
    main()
