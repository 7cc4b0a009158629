"""Data: recipe schema (no TensorFlow), sources, tf.data pipelines, augmentation, checks.

`DataConfig` imports without TensorFlow; `load_data`, `DataBundle`, `decode_image` and
`resize_for_eval` load TensorFlow on first use.
"""

from __future__ import annotations

from restransfer.data.schema import AugmentConfig, DataConfig
from restransfer.lazy import lazy_getattr

_LAZY = {
    "load_data": "restransfer.data.pipeline",
    "DataBundle": "restransfer.data.pipeline",
    "DataReport": "restransfer.data.check",
    "decode_image": "restransfer.data.image_ops",
    "resize_for_eval": "restransfer.data.image_ops",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["AugmentConfig", "DataConfig", *_LAZY]
