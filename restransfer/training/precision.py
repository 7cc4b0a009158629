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


def resolve_jit_compile(setting: bool | str, *, accelerator: bool | None = None) -> tuple[bool, str]:
    """``(jit_compile, reason)`` for a recipe's ``jit_compile: auto | true | false``.

    ``auto`` is on with an accelerator and off on CPU, where XLA-compiled convolutions run
    several times slower than TensorFlow's oneDNN kernels. ``accelerator`` is the machine's
    answer when known (default: ask the backend).
    """
    if setting == "auto":
        if has_accelerator() if accelerator is None else accelerator:
            return True, "auto: accelerator found"
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
