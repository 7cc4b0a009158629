"""Data: recipe schema (no TensorFlow), sources, tf.data pipelines, augmentation, checks.

`DataConfig` imports without TensorFlow; `load_data`, `DataBundle`, `decode_image` and
`resize_for_eval` load TensorFlow on first use.
"""

from __future__ import annotations

import importlib

from restransfer.data.schema import AugmentConfig, DataConfig

_LAZY = {
    "load_data": "restransfer.data.pipeline",
    "DataBundle": "restransfer.data.pipeline",
    "DataReport": "restransfer.data.check",
    "decode_image": "restransfer.data.image_ops",
    "resize_for_eval": "restransfer.data.image_ops",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'restransfer.data' has no attribute '{name}'")


__all__ = ["AugmentConfig", "DataConfig", *_LAZY]
