"""Custom layers the builders need; registered so `.keras` files reload in safe mode."""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "restransfer"

# Mean and standard deviation of ImageNet in RGB order, on the 0-255 scale.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# keras.applications "caffe" preprocessing: BGR order, mean subtraction only.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESSING_MODES = ("torch", "caffe", "tf", "none")


@keras.saving.register_keras_serializable(package=PACKAGE)
class DropPath(keras.layers.Layer):
    """Stochastic depth: drop a residual branch per sample, scale the survivors.

    Args:
        rate: probability of dropping the branch during training.
    """

    def __init__(self, rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1). Received rate={rate}")
        self.rate = float(rate)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype) < keep
        return x * ops.cast(mask, x.dtype) / ops.cast(keep, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ZeroPadShortcut(keras.layers.Layer):
    """Parameter-free shortcut (option A): subsample the identity, zero-pad new channels.

    Args:
        filters: output channels; must be at least the input's.
        stride: spatial subsampling factor.
    """

    def __init__(self, filters: int, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.stride = int(stride)

    def call(self, x):
        if self.stride > 1:
            x = x[:, :: self.stride, :: self.stride, :]
        extra = self.filters - x.shape[-1]
        if extra:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])
        return x

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        s = self.stride
        h = None if h is None else -(-h // s)
        w = None if w is None else -(-w // s)
        return (n, h, w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Preprocess(keras.layers.Layer):
    """Normalise RGB images in 0-255 the way a set of weights was trained.

    Modes: ``"torch"`` (ImageNet mean/std, torchvision and timm), ``"caffe"`` (RGB to BGR and
    mean subtraction, keras.applications ResNet), ``"tf"`` (scale to [-1, 1]), ``"none"``.
    Inside the model, so exported models take raw pixels and users cannot pick the wrong one.
    """

    def __init__(self, mode: str = "torch", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"Preprocess mode must be one of {PREPROCESSING_MODES}. Received mode={mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.mode == "torch":
            return (x - ops.array(IMAGENET_MEAN, "float32")) / ops.array(IMAGENET_STD, "float32")
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.array(CAFFE_MEAN_BGR, "float32")
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _cpu_only() -> bool:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.config.list_logical_devices("GPU")
    if backend == "jax":
        import jax

        return jax.default_backend() == "cpu"
    return False


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupedConv2D(keras.layers.Conv2D):
    """``Conv2D`` with ``groups > 1`` that stays fast on CPU; same weights, same results.

    On CPU, TensorFlow runs grouped convolutions through XLA and XLA:CPU has no grouped kernel:
    the grouped convolution is orders of magnitude slower than ordinary convolutions over
    channel slices (benchmarks/results/cpu-jax-grouped-conv-b8-half-size.json, on the docs'
    Benchmarks page). On a GPU the fused grouped conv (cuDNN) is kept.
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1 or not _cpu_only():
            return super().convolution_op(inputs, kernel)
        xs = ops.split(inputs, self.groups, axis=-1)
        ks = ops.split(kernel, self.groups, axis=-1)
        return ops.concatenate(
            [super(GroupedConv2D, self).convolution_op(x, k) for x, k in zip(xs, ks)], axis=-1
        )
