import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from corner_task import corner_images, explain_corners, train_corner_model

from restransfer.diagnostics.gradcam import grad_cam, last_stage_layer, save_explanation
from restransfer.errors import ConfigError
from restransfer.models import create_model

HERE = Path(__file__).parent


def check_corners(result: dict) -> None:
    assert result["stage"] == "conv4" and result["layer"] == "conv4_block1_out"
    assert result["shape"] == [8, 32, 32]
    assert result["range"][0] >= 0.0 and result["range"][1] == pytest.approx(1.0)
    # The model reads the corner, and Grad-CAM puts most of the map on it, for every image.
    assert result["predicted"] == result["labels"]
    for label, quadrants in zip(result["labels"], result["quadrants"]):
        assert int(np.argmax(quadrants)) == label, (label, quadrants)
        assert quadrants[label] > 2 * max(q for i, q in enumerate(quadrants) if i != label), (label, quadrants)


@pytest.fixture(scope="module")
def corner_model():
    return train_corner_model()


def test_grad_cam_lights_up_the_deciding_corner_on_tensorflow(corner_model):
    check_corners(explain_corners(corner_model))


def test_grad_cam_lights_up_the_deciding_corner_on_jax():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, str(HERE / "corner_task.py")], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["backend"] == "jax" and not answer["tensorflow_imported"]
    check_corners(answer)


def test_grad_cam_equals_the_keras_tutorial_computation(corner_model):
    # The reference: one model with two outputs under a GradientTape (Keras' Grad-CAM example).
    import tensorflow as tf

    images = corner_images([0, 3, 1], np.random.default_rng(5))
    layer = last_stage_layer(corner_model)
    both = keras.Model(corner_model.input, [layer.output, corner_model.get_layer("predictions").output])
    with tf.GradientTape() as tape:
        features, logits = both(images)
        score = tf.reduce_sum(logits[:, 2])
    weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2), keepdims=True)
    reference = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
    reference /= reference.max(axis=(1, 2), keepdims=True)
    cam = grad_cam(corner_model, images, classes=2)
    np.testing.assert_allclose(cam.coarse, reference, atol=1e-5)
    assert cam.classes.tolist() == [2, 2, 2]
    np.testing.assert_allclose(cam.probabilities, corner_model.predict(images, verbose=0), atol=1e-6)


def test_grad_cam_uses_conv5_on_imagenet_nets_and_saves_an_overlay(tmp_path):
    model = create_model("resnet18", num_classes=3, input_shape=(64, 64, 3))
    image = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype("float32")
    cam = grad_cam(model, image)
    assert (cam.stage, cam.layer, cam.heatmaps.shape, cam.coarse.shape) == ("conv5", "conv5_block2_out",
                                                                         (1, 64, 64), (1, 2, 2))
    out = save_explanation(image, cam.heatmaps[0], tmp_path / "cam.png", title="x")
    from PIL import Image

    assert Image.open(out).size[0] > 200


def test_grad_cam_refuses_bad_input():
    model = create_model("resnet18", num_classes=3, input_shape=(64, 64, 3))
    with pytest.raises(ConfigError, match="classes must be in 0..2"):
        grad_cam(model, np.zeros((1, 64, 64, 3)), classes=3)
    with pytest.raises(ConfigError, match=r"RGB images \[B, h, w, 3\]"):
        grad_cam(model, np.zeros((64, 64)))
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ConfigError, match="named after stages"):
        grad_cam(plain, np.zeros((1, 8, 8, 3)))


def test_explain_files_saves_one_overlay_per_image(corner_model, tmp_path):
    from PIL import Image

    from restransfer.diagnostics.gradcam import explain_files

    files = []
    for label, image in enumerate(corner_images([0, 3], np.random.default_rng(9))):
        files.append(tmp_path / f"corner{label}.png")
        Image.fromarray(image.astype("uint8")).save(files[-1])
    names = ["top-left", "top-right", "bottom-left", "bottom-right"]
    results = explain_files(corner_model, files, class_names=names, out=tmp_path / "cams")
    assert [r["class"] for r in results] == ["top-left", "bottom-right"]
    assert [Path(r["explanation"]).name for r in results] == ["corner0.gradcam.png", "corner1.gradcam.png"]
    assert all(Image.open(r["explanation"]).size[0] > 200 and r["stage"] == "conv4" for r in results)
    one = explain_files(corner_model, files[:1], class_names=names, out=tmp_path / "one.png")
    assert one[0]["explanation"] == str(tmp_path / "one.png") and (tmp_path / "one.png").is_file()
    with pytest.raises(ConfigError, match="one PNG file but 2 images"):
        explain_files(corner_model, files, class_names=names, out=tmp_path / "x.png")
