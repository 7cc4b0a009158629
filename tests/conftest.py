import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torchvision, which timm imports, crashes the process (a segmentation fault in its C
# extension) when it loads after TensorFlow 2.21; loaded first, both work. timm is the
# reference of the ResNet-D/SE tests (tests/models/test_family.py), where it is installed.
try:
    import timm  # noqa: F401
except ImportError:
    pass

# Two JAX devices on the host CPU, for data-parallel tests without a GPU. Eigen's thread pool
# is off: on a busy 2-core machine one device sat in the all-reduce's rendezvous while the
# other's convolutions queued behind it for the same threads, and XLA aborted the process when
# its collective timeout ran out.
TWO_HOST_DEVICES = {
    "KERAS_BACKEND": "jax",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false",
}
