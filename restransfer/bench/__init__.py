"""Throughput benchmarks: training through ``fit()``, inference, and the input pipeline.

Every training result is measured side by side with a keras.applications reference built
with the same settings in the same process, interleaved round by round, so each row carries a
ratio that load from other processes cannot fake. Nothing here imports TensorFlow at module
level: the JAX (GPU) path runs without it.

Example:
    >>> from restransfer.bench import TrainCase, run_training
    >>> records = run_training([TrainCase("resnet50", image_size=64, batch_size=4)], steps=3)
    >>> sorted(records[0])[:3]
    ['backend', 'batch_size', 'compile_s']
"""

from __future__ import annotations

from restransfer.bench.results import add_ratios, mfu, write_results
from restransfer.bench.training import TrainCase, run_training

__all__ = ["TrainCase", "add_ratios", "mfu", "run_training", "write_results"]
