"""A task whose class is decided by one corner: a white 8x8 patch in corner k means class k.

Shared by the Grad-CAM tests on TensorFlow (imported) and JAX (run as a script, printing JSON):
a tiny CIFAR-style ResNet learns it in seconds, and its Grad-CAM must light up that corner.
"""

from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def corner_images(labels, rng: np.random.Generator, size: int = 32, patch: int = 8) -> np.ndarray:
    """Grey noise with a white patch in corner ``label`` of each image (RGB 0..255)."""
    images = rng.uniform(40, 160, size=(len(labels), size, size, 3)).astype("float32")
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        top, left = row * (size - patch), col * (size - patch)
        images[i, top:top + patch, left:left + patch] = 255.0
    return images


def quadrant_means(heatmap: np.ndarray) -> list[float]:
    """Mean of a map in each quadrant, in the order of ``CORNERS``."""
    h, w = heatmap.shape[0] // 2, heatmap.shape[1] // 2
    return [float(heatmap[:h, :w].mean()), float(heatmap[:h, w:].mean()),
            float(heatmap[h:, :w].mean()), float(heatmap[h:, w:].mean())]


def train_corner_model(seed: int = 0, images: int = 384, epochs: int = 6) -> keras.Model:
    """A 6k-parameter CIFAR ResNet (one block per stage, last stage conv4) fitted to the task."""
    from restransfer.models.resnet import build_resnet
    from restransfer.models.specs import SPECS

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    labels = np.arange(images) % 4
    x = corner_images(labels, rng)
    spec = replace(SPECS["cifar_resnet20"], repeats=(1, 1, 1), widths=(8, 8, 16))
    model = build_resnet(spec, num_classes=4, input_shape=(32, 32, 3), preprocessing="torch")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, labels, epochs=epochs, batch_size=32, verbose=0)
    return model


def explain_corners(model: keras.Model, seed: int = 1) -> dict:
    """Grad-CAM of two fresh images per corner: predictions, quadrant means, stage."""
    from restransfer.diagnostics.gradcam import grad_cam

    labels = np.arange(8) % 4
    images = corner_images(labels, np.random.default_rng(seed))
    cam = grad_cam(model, images, classes=labels)
    predicted = grad_cam(model, images)
    return {"labels": labels.tolist(), "predicted": predicted.classes.tolist(), "stage": cam.stage,
            "layer": cam.layer, "shape": list(cam.heatmaps.shape),
            "quadrants": [quadrant_means(h) for h in cam.heatmaps],
            "range": [float(cam.heatmaps.min()), float(cam.heatmaps.max())]}


if __name__ == "__main__":
    import sys

    model = train_corner_model()
    # Keras' set_random_seed imports TensorFlow wherever it is installed; Grad-CAM must not.
    sys.modules.pop("tensorflow", None)
    result = explain_corners(model)
    print(json.dumps({"backend": keras.backend.backend(), **result,
                      "tensorflow_imported": "tensorflow" in sys.modules}))
