"""End to end: fine-tuning images/s with the real input pipeline against synthetic batches."""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np

from restransfer.bench.timing import StepTimer, device_name, summarize
from restransfer.bench.training import compile_for_bench, synthetic_batches


def write_jpeg_folder(root: Path, *, images: int, classes: int = 4, seed: int = 0,
                      size_range: tuple[int, int] = (200, 400)) -> Path:
    """``root/class_k/img_i.jpg``: random-sized JPEGs, as a photo folder has (decode cost included)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(images):
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        h, w = rng.integers(*size_range, size=2)
        # Smooth noise compresses like a photo; white noise would make unusually large files.
        small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        Image.fromarray(small).resize((int(w), int(h)), Image.BILINEAR).save(folder / f"img_{i}.jpg", quality=90)
    return root


def run_pipeline(name: str = "resnet18", *, image_size: int = 128, batch_size: int = 16, images: int = 256,
                 steps: int = 8, rounds: int = 2, warmup: int = 2, workdir: str | Path | None = None) -> list[dict]:
    """Images/s of the same compiled model fed by ``load_data`` (a JPEG folder) and by synthetic data.

    The folder pipeline decodes every epoch (``cache="none"``) and augments with a flip and a
    random resized crop, the worst case of a fine-tuning recipe. The two feeds alternate
    round by round. ``ratio_to_reference`` of the pipeline row is its images/s over the
    synthetic row's: near 1.0 means the input pipeline is not the bottleneck.
    """
    from restransfer.data import load_data
    from restransfer.models.registry import create_model
    from restransfer.training.precision import resolve_jit_compile

    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="restransfer-bench-"))
    folder = write_jpeg_folder(workdir / "images", images=images)
    bundle = load_data(source="folder", path=str(folder), image_size=[image_size, image_size],
                       batch_size=batch_size, validation_split=0.1, cache="none",
                       augment={"flip": "horizontal", "random_resized_crop": {}}, run_dir=workdir)
    classes = len(bundle.class_names)
    model = create_model(name, num_classes=classes, input_shape=(image_size, image_size, 3),
                         preprocessing="auto")
    jit, _ = resolve_jit_compile("auto")
    compile_for_bench(model, jit_compile=jit, steps_per_epoch=max(bundle.num_train // batch_size, 1))
    feeds = {
        "folder_pipeline": bundle.train.repeat(),
        "synthetic": synthetic_batches(batch_size, image_size, classes),
    }
    timers = {key: StepTimer() for key in feeds}
    for data in feeds.values():
        model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    for round_index in range(rounds):
        for key in (list(feeds) if round_index % 2 == 0 else list(feeds)[::-1]):
            model.fit(feeds[key], steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timers[key]])
    common = {"model": name, "implementation": "restransfer", "backend": keras.backend.backend(),
              "device": device_name(), "precision": "float32", "jit_compile": jit,
              "batch_size": batch_size, "image_size": image_size, "images": images}
    synthetic = {**common, "data": "synthetic", **summarize(timers["synthetic"].step_times, batch_size)}
    real = {**common, "data": "folder_pipeline", **summarize(timers["folder_pipeline"].step_times, batch_size)}
    synthetic["ratio_to_reference"] = 1.0
    real["ratio_to_reference"] = round(real["img_per_s"] / synthetic["img_per_s"], 4)
    return [real, synthetic]
