"""Mixed precision and XLA policy: what a recipe asks for, what the machine supports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def has_accelerator() -> bool:
    """Whether the active Keras backend sees a GPU or TPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() in ("gpu", "cuda", "rocm", "tpu")
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def resolve_jit_compile(setting: bool | str, *, accelerator: bool | None = None,
                        backend: str | None = None) -> tuple[bool, str]:
    """``(jit_compile, reason)`` for a recipe's ``jit_compile: auto | true | false``.

    ``auto`` is on with an accelerator. On a CPU it is off under TensorFlow, whose oneDNN kernels
    run convolutions several times faster than XLA's, and on under JAX, which has no kernels but
    XLA's: without ``jit`` it compiles and dispatches every op on its own, and one compiled step is
    faster (benchmarks/results/cpu-jax-train-xla-on-off.json). ``accelerator`` and ``backend`` are
    the machine's answers when known (default: ask Keras).
    """
    if setting == "auto":
        if has_accelerator() if accelerator is None else accelerator:
            return True, "auto: accelerator found"
        if (backend or keras.backend.backend()) == "jax":
            return True, "auto: CPU under JAX, where every op is an XLA computation; one compiled step is faster"
        return False, "auto: CPU only, XLA convolutions are slower there"
    return bool(setting), "set in the recipe"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras' global dtype policy for the block, then restore the previous one.

    Layers take the policy when they are built, so build (and train) the model inside the
    block; a model keeps its policy after the block ends.
    """
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received {name!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def describe_precision(model: keras.Model) -> str:
    """One line for the run log: compute/variable dtypes, loss scaling, head dtype."""
    policy = model.dtype_policy
    optimizer = getattr(model, "optimizer", None)
    scaled = type(optimizer).__name__ == "LossScaleOptimizer"
    head = model.layers[-1]
    return (f"precision {policy.name} (compute {policy.compute_dtype}, variables {policy.variable_dtype}); "
            f"loss scaling {'on (dynamic)' if scaled else 'off'}; output dtype {head.compute_dtype}")
