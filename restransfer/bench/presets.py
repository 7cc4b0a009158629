"""Named benchmark settings: what ``restransfer bench train --preset NAME`` measures."""

from __future__ import annotations

import dataclasses

from restransfer.bench.training import TrainCase


@dataclasses.dataclass(frozen=True)
class Preset:
    """A list of cases with the timing settings that suit the device they are for."""

    cases: tuple[TrainCase, ...]
    steps: int
    rounds: int
    warmup: int
    description: str


def _gpu_cases(image_size: int, batch_size: int) -> tuple[TrainCase, ...]:
    gpu = dict(image_size=image_size, batch_size=batch_size, precision="mixed_bfloat16", jit_compile=True)
    return (
        # Same architecture as keras.applications.ResNet50: the like-for-like ratio.
        TrainCase("resnet50", style="keras", **gpu),
        # The torchvision layout (v1.5) that the throughput target and the PyTorch peer use.
        TrainCase("resnet50", style="torchvision", **gpu),
        TrainCase("resnext50_32x4d", style="torchvision", **gpu),
        TrainCase("resnet101", style="keras", **gpu),
        TrainCase("resnet152", style="keras", **gpu),
        TrainCase("resnet50", style="keras", **{**gpu, "precision": "float32"}),
    )


def _lease_cases(image_size: int, batch_size: int, large_batch: int) -> tuple[TrainCase, ...]:
    """The cases that fit one short device lease, most important first (a timeout cuts the tail)."""
    gpu = dict(image_size=image_size, batch_size=batch_size, precision="mixed_bfloat16", jit_compile=True)
    return (
        TrainCase("resnet50", style="keras", **gpu),
        TrainCase("resnext50_32x4d", style="torchvision", reference=False, **gpu),
        # The layout the PyTorch peer trains: the like-for-like ratio to torch.compile.
        TrainCase("resnet50", style="torchvision", reference=False, **gpu),
        # Host overhead: the same case with the host queueing four steps between callbacks.
        TrainCase("resnet50", style="torchvision", reference=False, steps_per_execution=4, **gpu),
        TrainCase("resnet50", style="torchvision", reference=False, **{**gpu, "batch_size": large_batch}),
    )


PRESETS = {
    "cpu": Preset(
        cases=tuple(
            TrainCase("resnet50", style="keras", image_size=128, batch_size=16, precision="float32",
                      jit_compile=jit)
            for jit in (False, True)
        ),
        steps=5, rounds=4, warmup=2,
        description="ResNet-50 (keras layout) vs keras.applications.ResNet50 on a small CPU, XLA off and on",
    ),
    "gpu": Preset(
        cases=_gpu_cases(224, 256), steps=50, rounds=3, warmup=10,
        description="bf16 mixed precision, XLA, batch 256 at 224 px (run under KERAS_BACKEND=jax)",
    ),
    # One 15-minute device lease: the first numbers, each case written as soon as it is measured.
    "gpu-lease": Preset(
        cases=_lease_cases(224, 256, 1024), steps=30, rounds=2, warmup=5,
        description="the gpu preset's headline cases for one short lease: ResNet-50 (+ keras.applications), "
                    "ResNeXt-50, the torchvision layout with and without steps_per_execution=4, batch 1024",
    ),
    "gpu-lease-smoke": Preset(
        cases=_lease_cases(32, 2, 4)[:2], steps=2, rounds=1, warmup=1,
        description="the gpu-lease preset at 32 px, batch 2: checks the command, measures nothing",
    ),
    # The gpu preset's code path at sizes a CPU runs in a minute: tests and dry runs.
    "gpu-smoke": Preset(
        # One case: each further ResNet-50-sized XLA compile costs about a minute on a CPU.
        cases=_gpu_cases(32, 2)[:1], steps=2, rounds=1, warmup=1,
        description="the gpu preset at 32 px, batch 2: checks the command, measures nothing",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a ConfigError lists the known ones."""
    from restransfer.errors import ConfigError, did_you_mean

    if name not in PRESETS:
        raise ConfigError(f"Unknown benchmark preset '{name}'." + did_you_mean(name, PRESETS)
                          + f" Presets: {sorted(PRESETS)}.")
    return PRESETS[name]
