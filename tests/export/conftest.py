"""A small trained run folder (per the run-folder contract) and its three exports, built once."""

import json

import keras
import numpy as np
import pytest

from restransfer import create_model
from restransfer.models.heads import classifier

CLASS_NAMES = ["red", "green", "blue"]
SIZE = 32


def colour_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Textured images whose class is the dominant colour channel: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.uniform(0, 120, (count, SIZE, SIZE, 3))
    images[np.arange(count), :, :, labels] += 120
    return images.astype("float32"), labels


@pytest.fixture(scope="session")
def trained_model():
    base = create_model("cifar_resnet20", include_top=False, preprocessing="auto", input_shape=(SIZE, SIZE, 3))
    # keras.Model(inputs-list, ...) as replace_head builds it: the export must accept list-structured models.
    model = keras.Model(base.inputs, classifier(base.output, len(CLASS_NAMES)), name="cifar_resnet20")
    images, labels = colour_images(96)
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    model.fit(images, keras.utils.to_categorical(labels, 3), batch_size=32, epochs=2, verbose=0)
    return model


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, trained_model):
    run = tmp_path_factory.mktemp("run")
    trained_model.save(run / "model.keras")
    (run / "class_names.json").write_text(json.dumps(CLASS_NAMES))
    (run / "run.json").write_text(json.dumps({
        "model": "cifar_resnet20", "image_size": [SIZE, SIZE], "preprocessing": "torch",
        "status": "finished", "backend": "tensorflow"}))
    # A valid recipe whose data has moved away: exports verify on synthetic samples.
    (run / "recipe.yaml").write_text("model: {name: cifar_resnet20}\nphases: [{epochs: 1}]\ndata: {source: folder, "
                                     "path: /nonexistent/moved, validation_split: 0.2, image_size: 32}\n")
    (run / "metrics.json").write_text(json.dumps({"final": {"val_accuracy": 1.0}}))
    return run


@pytest.fixture(scope="session")
def exports(run_dir):
    """Each format exported from the run folder, verified in a fresh process by export_run."""
    from restransfer import export_run

    return {
        "saved_model": export_run(run_dir, "saved_model"),
        "keras": export_run(run_dir, "keras"),
        "tflite": export_run(run_dir, "tflite", quantize="dynamic"),
    }


@pytest.fixture(scope="session")
def new_exports(tmp_path_factory, trained_model):
    """ONNX and full-integer TFLite exports of the trained model, verified in a fresh process."""
    from restransfer.export import export_model

    out = tmp_path_factory.mktemp("new_exports")
    images, _ = colour_images(48, seed=1)
    validation = colour_images(30, seed=2)
    return {
        "onnx": export_model(trained_model, out / "onnx", "onnx", CLASS_NAMES, samples=images[:8],
                             score_on=validation),
        "int8": export_model(trained_model, out / "int8", "tflite", CLASS_NAMES, samples=images[:8],
                             quantize="int8", representative=images, representative_count=32,
                             score_on=validation),
    }
