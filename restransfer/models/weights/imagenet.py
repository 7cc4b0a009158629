"""The published keras.applications ImageNet files, fetched through Keras' own download cache."""

from __future__ import annotations

import os
from pathlib import Path

from restransfer.errors import WeightsError

# As keras/src/applications/resnet.py (BASE_WEIGHTS_PATH, WEIGHTS_HASHES): md5 of the file
# with the 1000-class top, and of the "_notop" file. A test checks them against Keras'.
BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
IMAGENET_FILES = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50v2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}
IMAGENET_CLASSES = 1000


def file_name(model_name: str, include_top: bool) -> str:
    """``resnet50_weights_tf_dim_ordering_tf_kernels.h5`` (or ``..._notop.h5``)."""
    return f"{model_name}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"


def check_imagenet(model_name: str, style: str | None) -> None:
    """Refuse ``weights="imagenet"`` where no published file fits the network."""
    if model_name not in IMAGENET_FILES:
        raise WeightsError(
            f"weights='imagenet' exists for {sorted(IMAGENET_FILES)} (the keras.applications files), not "
            f"for '{model_name}'. For other networks pass the path of a torchvision or timm state dict "
            "(.safetensors, .npz or .pth), e.g. create_model('resnet18', weights='resnet18.safetensors')."
        )
    if style not in (None, "keras"):
        raise WeightsError(
            f"weights='imagenet' are keras.applications' weights (v1 and V2) and need style='keras' (the default "
            f"with weights='imagenet'); received style='{style}'. For torchvision-style weights pass the "
            "path of a torchvision or timm state dict instead."
        )


def fetch(model_name: str, include_top: bool) -> Path:
    """Path of the official file: from Keras' cache (``$KERAS_HOME/models``) or downloaded there.

    ``keras.utils.get_file`` checks the file's md5 against the published one, for a cached
    file too, so a truncated or different file is never loaded as ImageNet weights.
    """
    import keras

    name = file_name(model_name, include_top)
    url = BASE_URL + name
    md5 = IMAGENET_FILES[model_name][0 if include_top else 1]
    try:
        return Path(keras.utils.get_file(name, url, cache_subdir="models", file_hash=md5))
    except Exception as error:  # get_file raises bare Exception on network errors
        cache = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models"
        raise WeightsError(
            f"Could not get the ImageNet weights {name}: {str(error).splitlines()[0]} Without internet, "
            f"download {url} elsewhere and copy it to {cache / name}, or pass a local weights path."
        ) from None
