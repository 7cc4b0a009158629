import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torchvision, which timm imports, crashes the process (a segmentation fault in its C
# extension) when it loads after TensorFlow 2.21; loaded first, both work. timm is the
# reference of the ResNet-D/SE tests (tests/models/test_family.py), where it is installed.
try:
    import timm  # noqa: F401
except ImportError:
    pass
