"""Step timing inside ``fit()``, peak memory, and a description of the device."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time

import keras


class StepTimer(keras.callbacks.Callback):
    """Record the wall time of every step that ``fit()`` (or ``predict()``) runs.

    A step ends when Keras hands its logs to the callbacks; overriding ``on_train_batch_end``
    makes Keras dispatch callbacks synchronously and turn the logs into Python floats, which
    waits for the device, so an interval is a finished step, not a queued one. With
    ``steps_per_execution=k`` Keras calls back once per ``k`` steps; the interval is divided by
    the number of steps it covered.

    Intervals run from one step's end to the next one's (so they include fetching the next
    batch); the first step of each ``fit()`` call runs from its begin to its end.
    """

    def __init__(self):
        super().__init__()
        self.step_times: list[float] = []  # seconds per step, one entry per step
        self.calls: list[list[float]] = []  # the same, grouped by fit() call
        self.first_step_s: float | None = None
        self._begin: tuple[int, float] | None = None
        self._last_end: float | None = None

    def on_train_begin(self, logs=None):
        self._last_end = None
        self.calls.append([])

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = (batch, time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        first_batch, begin = self._begin
        steps = batch - first_batch + 1
        start = begin if self._last_end is None else self._last_end
        if self.first_step_s is None:
            self.first_step_s = now - begin
        self.step_times.extend([(now - start) / steps] * steps)
        self.calls[-1].extend([(now - start) / steps] * steps)
        self._last_end = now

    # predict() calls back the same way; the same timing applies.
    def on_predict_begin(self, logs=None):
        self.on_train_begin(logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self.on_train_batch_begin(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self.on_train_batch_end(batch, logs)


class FitTimer(keras.callbacks.Callback):
    """The wall time of whole ``fit()`` calls, with no per-step hook.

    With no callback that needs every step's logs (or only ``async_safe`` ones, as the recipe
    engine's), Keras on a thread-safe backend (JAX) queues the next step while the device runs
    the last one; ``StepTimer``'s per-step hook makes every step wait instead. A call ends after
    Keras has read the epoch's metrics, which waits for the last step.
    """

    async_safe = True

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []  # one entry per fit() call
        self._start: float | None = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def summarize(step_times: list[float], batch_size: int) -> dict:
    """Median step time and the images per second it implies, with the spread."""
    if not step_times:
        raise ValueError("no steps were timed")
    median = statistics.median(step_times)
    ordered = sorted(step_times)
    return {
        "step_ms_median": median * 1e3,
        "step_ms_p10": ordered[int(0.1 * (len(ordered) - 1))] * 1e3,
        "step_ms_p90": ordered[int(0.9 * (len(ordered) - 1))] * 1e3,
        "img_per_s": batch_size / median,
        "timed_steps": len(step_times),
    }


def accelerator() -> str:
    """``"gpu"``, ``"tpu"`` or ``"cpu"``: where Keras runs the model."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.devices()[0].platform
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def device_name() -> str:
    """A human-readable name of the device, e.g. ``"NVIDIA H100 80GB HBM3"`` or the CPU model."""
    if accelerator() == "gpu":
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            return jax.devices()[0].device_kind
        if backend == "tensorflow":
            import tensorflow as tf

            gpu = tf.config.list_physical_devices("GPU")[0]
            return tf.config.experimental.get_device_details(gpu).get("device_name", "GPU")
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model} ({os.cpu_count()} cores)"


def peak_memory_mb() -> tuple[float | None, str]:
    """The peak memory so far and what it measures.

    On a GPU, the device allocator's peak (``memory_stats()["peak_bytes_in_use"]`` on JAX,
    ``get_memory_info("GPU:0")["peak"]`` on TensorFlow); on a CPU, the process's peak resident
    set size. Both are peaks of the whole process since ``reset_peak_memory()``.
    """
    if accelerator() == "gpu":
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            peak = stats.get("peak_bytes_in_use")
            return (None if peak is None else peak / 2**20), "device_peak_bytes_in_use"
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, "device_peak"
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"


def reset_peak_memory() -> None:
    """Reset the device peak where the backend allows it (TensorFlow GPU); a no-op elsewhere."""
    if keras.backend.backend() == "tensorflow" and accelerator() == "gpu":
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats("GPU:0")
