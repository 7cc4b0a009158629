"""Inference images/s: the Keras model through ``predict()`` and its exported SavedModel."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from restransfer.bench import models as bench_models
from restransfer.bench.timing import StepTimer, device_name, summarize


def export_saved_model(model: keras.Model, path: Path) -> Path:
    """Export ``model`` as ``restransfer export`` does; its ``serve_tensor`` signature is timed."""
    from restransfer.export.saved_model import write_saved_model

    classes = model.output_shape[-1]
    write_saved_model(model, path, [f"class_{i}" for i in range(classes)], model.input_shape[1:3])
    return path


def _time_saved_model(serve, x, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        np.asarray(serve(x))  # waits for the result
        times.append(time.perf_counter() - start)
    return times


def run_inference(name: str, *, style: str = "keras", image_size: int = 224, batch_size: int = 32,
                  steps: int = 10, rounds: int = 3, warmup: int = 2) -> list[dict]:
    """Images/s of ``predict()`` on the Keras model and of its SavedModel's ``serve_tensor``.

    The two alternate round by round, as in training. The SavedModel needs TensorFlow; without
    it only the Keras row is returned.

    Returns:
        Records with ``implementation`` ``"keras.predict"`` and ``"saved_model.serve_tensor"``;
        ``ratio_to_reference`` is each one's images/s over ``keras.predict``'s.
    """
    model = bench_models.build_ours(name, image_size=image_size, num_classes=1000, style=style,
                                    precision="float32")
    x = np.random.default_rng(0).uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    keras_timer = StepTimer()
    # predict() batches an array itself; `steps` batches of one repeated array.
    data = np.repeat(x, steps, axis=0)
    model.predict(x, batch_size=batch_size, verbose=0)  # compile

    serve = None
    try:
        import tensorflow as tf
    except ImportError:
        tf = None
    if tf is not None and keras.backend.backend() == "tensorflow":
        directory = Path(tempfile.mkdtemp(prefix="restransfer-bench-"))
        loaded = tf.saved_model.load(str(export_saved_model(model, directory / "saved_model")))
        signature = loaded.signatures["serve_tensor"]
        x_tf = tf.constant(x)

        def serve(images):
            return signature(images=images)["probabilities"]

        _time_saved_model(serve, x_tf, warmup)
    saved_times: list[float] = []
    for _ in range(rounds):
        model.predict(data, batch_size=batch_size, verbose=0, callbacks=[keras_timer])
        if serve is not None:
            saved_times += _time_saved_model(serve, x_tf, steps)

    common = {"model": name, "style": style, "backend": keras.backend.backend(), "device": device_name(),
              "precision": "float32", "batch_size": batch_size, "image_size": image_size}
    keras_row = {**common, "implementation": "keras.predict", **summarize(keras_timer.step_times, batch_size),
                 "ratio_to_reference": 1.0}
    records = [keras_row]
    if serve is not None:
        row = {**common, "implementation": "saved_model.serve_tensor", **summarize(saved_times, batch_size)}
        row["ratio_to_reference"] = round(row["img_per_s"] / keras_row["img_per_s"], 4)
        records.append(row)
    return records
