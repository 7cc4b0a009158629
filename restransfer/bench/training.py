"""Training throughput through ``model.compile`` + ``model.fit``, ours and the reference interleaved."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

import keras
import numpy as np

from restransfer.bench import models as bench_models
from restransfer.bench.results import OURS, add_ratios, mfu, peak_flops, train_flops_per_image
from restransfer.bench.timing import FitTimer, StepTimer, accelerator, device_name, peak_memory_mb, summarize


@dataclasses.dataclass(frozen=True)
class TrainCase:
    """One training configuration, measured for our model and its keras.applications reference.

    Attributes:
        model: a restransfer model name (``restransfer models list``).
        image_size: square input size in pixels.
        batch_size: images per step.
        precision: a Keras dtype policy: ``float32``, ``mixed_bfloat16``, ``mixed_float16``.
        jit_compile: ``True``, ``False`` or ``"auto"`` as ``model.compile`` takes it.
        style: ``"keras"`` (the same architecture as keras.applications) or ``"torchvision"``.
        reference: also measure the keras.applications model of the same depth.
        num_classes: classes of the head.
        steps_per_execution: training steps per host dispatch (Keras' ``steps_per_execution``):
            above 1 the host queues several steps between callbacks, which shows how much of a
            step is host overhead.
    """

    model: str
    image_size: int = 224
    batch_size: int = 32
    precision: str = "float32"
    jit_compile: bool | str = "auto"
    style: str = "keras"
    reference: bool = True
    num_classes: int = 1000
    steps_per_execution: int = 1

    @property
    def case_id(self) -> str:
        spe = f"-spe{self.steps_per_execution}" if self.steps_per_execution != 1 else ""
        return (f"{self.model}-{self.style}-{self.image_size}px-b{self.batch_size}-{self.precision}"
                f"-xla_{self.jit_compile}{spe}")

    @property
    def reference_name(self) -> str | None:
        return bench_models.REFERENCE_FOR.get(self.model) if self.reference else None


def compile_for_bench(model: keras.Model, *, jit_compile, steps_per_epoch: int = 100,
                      steps_per_execution: int = 1) -> keras.Model:
    """Compile exactly as a recipe phase does (``restransfer.recipe.engine.compile_phase``).

    The phase trains everything with SGD + momentum 0.9 and a cosine schedule; ``jit_compile``
    ``"auto"`` is resolved by the recipe policy (``restransfer.training.precision``).
    ``steps_per_execution`` is set on the compiled model as ``compile()`` would set it.
    """
    from restransfer.recipe.engine import compile_phase
    from restransfer.recipe.schema import PhaseConfig
    from restransfer.training.precision import resolve_jit_compile

    phase = PhaseConfig(epochs=1, optimizer={"name": "sgd", "learning_rate": 0.01, "momentum": 0.9})
    compile_phase(model, phase, frozen=(), steps_per_epoch=steps_per_epoch, num_classes=model.output_shape[-1],
                  jit_compile=resolve_jit_compile(jit_compile)[0])
    model.steps_per_execution = steps_per_execution
    return model


def synthetic_batches(batch_size: int, image_size: int, num_classes: int, seed: int = 0):
    """One fixed batch served forever from where the backend trains, so no input cost is timed.

    TensorFlow gets ``tf.data.Dataset.from_tensors(...).repeat()``; the other backends a
    generator that yields the same backend arrays (already on the device on JAX).
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    y = np.eye(num_classes, dtype="float32")[rng.integers(0, num_classes, batch_size)]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(1)
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)

    def forever():
        while True:
            yield x, y

    return forever()


class _Runner:
    """One compiled model with its data and the step times of every ``fit()`` call so far."""

    def __init__(self, case: TrainCase, implementation: str):
        self.case = case
        self.implementation = implementation
        kwargs = dict(image_size=case.image_size, num_classes=case.num_classes, precision=case.precision)
        if implementation == OURS:
            self.model = bench_models.build_ours(case.model, style=case.style, **kwargs)
            self.name = case.model
        else:
            self.model = bench_models.build_reference(case.reference_name, **kwargs)
            self.name = case.reference_name
        compile_for_bench(self.model, jit_compile=case.jit_compile, steps_per_execution=case.steps_per_execution)
        self.data = synthetic_batches(case.batch_size, case.image_size, case.num_classes)
        self.timer = StepTimer()
        self.fit_timer = FitTimer()
        self.fit_steps: list[int] = []
        self.compile_s: float | None = None
        self.memory: tuple[float | None, str] = (None, "")

    def fit(self, steps: int) -> None:
        """``steps`` timed step by step, then ``steps`` more timed as one call without per-step waits."""
        self.model.fit(self.data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False,
                       callbacks=[self.timer])
        self.model.fit(self.data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False,
                       callbacks=[self.fit_timer])
        self.fit_steps.append(steps)

    def warm_up(self, steps: int) -> None:
        """Compile (the first step) and run a few steps that are not timed."""
        warm = StepTimer()
        steps = max(steps, 2 * self.case.steps_per_execution)
        self.model.fit(self.data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[warm])
        steady = float(np.median(warm.step_times[1:]))
        self.compile_s = max(warm.first_step_s - steady, 0.0)
        self.memory = peak_memory_mb()

    def record(self, device: str, peak: float | None) -> dict:
        case = self.case
        macs = bench_models.macs_per_image(self.model)
        stats = summarize(self.timer.step_times, case.batch_size)
        fit_ms = float(np.median([s / n for s, n in zip(self.fit_timer.seconds, self.fit_steps)])) * 1e3
        return {
            "case": case.case_id,
            "model": self.name,
            "implementation": self.implementation,
            "style": case.style if self.implementation == OURS else "keras",
            "reference": case.reference_name,
            "same_architecture": case.model in bench_models.SAME_ARCHITECTURE and case.style == "keras",
            "backend": keras.backend.backend(),
            "device": device,
            "accelerator": accelerator(),
            "precision": case.precision,
            "jit_compile": case.jit_compile,
            "jit_compile_resolved": bool(self.model.jit_compile),
            "batch_size": case.batch_size,
            "image_size": case.image_size,
            "steps_per_execution": case.steps_per_execution,
            **stats,
            "round_step_ms": [float(np.median(call)) * 1e3 for call in self.timer.calls],
            # Whole fit() calls without a per-step hook: what recipe training (async-safe callbacks) gets.
            "fit_step_ms_median": fit_ms,
            "fit_img_per_s": case.batch_size / (fit_ms / 1e3),
            "compile_s": self.compile_s,
            "peak_memory_mb": self.memory[0],
            "memory_scope": self.memory[1],
            "params": self.model.count_params(),
            "gmacs_per_image": macs / 1e9,
            "train_tflops": stats["img_per_s"] * train_flops_per_image(macs) / 1e12,
            "mfu": mfu(stats["img_per_s"], macs, peak),
        }


def run_training(cases: Iterable[TrainCase], *, steps: int = 10, rounds: int = 3, warmup: int = 2,
                 peak_tflops: float | None = None, log=print) -> list[dict]:
    """Measure every case: our model and its reference, alternating for ``rounds`` rounds.

    Both models of a case are built, compiled and warmed up first; then each round runs
    ``steps`` timed steps of one and then the other, in alternating order (ABBA...), so that a
    slow spell of a shared machine lands on both. The median over all timed steps gives
    images/s.

    Args:
        cases: the configurations.
        steps: timed steps per model per round.
        rounds: rounds of alternation.
        warmup: untimed steps after compilation.
        peak_tflops: the device's bf16 peak for MFU (known GPUs are looked up by name).
        log: where progress lines go (``None`` for silence).

    Returns:
        One record per model per case, with ``ratio_to_reference`` set.
    """
    log = log or (lambda *_: None)
    device = device_name()
    peak = peak_flops(device, peak_tflops)
    records = []
    for case in cases:
        implementations = [OURS] + (["keras.applications"] if case.reference_name else [])
        runners = []
        for implementation in implementations:
            started = time.perf_counter()
            runner = _Runner(case, implementation)
            runner.warm_up(warmup)
            log(f"{case.case_id} {implementation}: built, compiled and warmed up in "
                f"{time.perf_counter() - started:.1f}s")
            runners.append(runner)
        for round_index in range(rounds):
            order = runners if round_index % 2 == 0 else runners[::-1]
            for runner in order:
                runner.fit(steps)
        for runner in runners:
            record = runner.record(device, peak)
            log(f"{case.case_id} {runner.implementation}: {record['img_per_s']:.1f} img/s, "
                f"median step {record['step_ms_median']:.1f} ms")
            records.append(record)
        del runners
        keras.backend.clear_session()
    return add_ratios(records)
