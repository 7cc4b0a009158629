"""Gradient norms: equal to a hand-computed backward pass; grouping keeps the total."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import restransfer as rt
from restransfer.diagnostics.gradients import gradient_norms, group_name
from restransfer.errors import ConfigError

pytestmark = pytest.mark.tensorflow

X = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 3.0]], "float32")
Y = np.array([[1.0], [-2.0]], "float32")
W1 = np.array([[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6]], "float32")
B1 = np.array([0.05, -0.05], "float32")
W2 = np.array([[0.7], [-0.8]], "float32")
B2 = np.array([0.2], "float32")


def two_dense_model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(2, name="dense_a")(inputs)
    outputs = keras.layers.Dense(1, name="dense_b")(hidden)
    model = keras.Model(inputs, outputs)
    model.get_layer("dense_a").set_weights([W1, B1])
    model.get_layer("dense_b").set_weights([W2, B2])
    return model


def hand_computed_norms():
    h = X @ W1 + B1
    out = h @ W2 + B2
    g_out = 2 * (out - Y) / len(X)  # d mean((out - y)^2) / d out
    g_h = g_out @ W2.T

    def norm(*gs):
        return float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in gs)))

    return {"dense_a": norm(X.T @ g_h, g_h.sum(0)), "dense_b": norm(h.T @ g_out, g_out.sum(0))}


def test_norms_equal_a_hand_computed_backward_pass():
    norms = gradient_norms(two_dense_model(), X, Y, loss="mean_squared_error")
    expected = hand_computed_norms()
    assert list(norms) == ["dense_a", "dense_b"]
    for name in expected:
        assert norms[name] == pytest.approx(expected[name], rel=1e-5)


def test_jax_backend_gives_the_same_norms(tmp_path):
    script = tmp_path / "jax_norms.py"
    script.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import keras\n"
        "assert keras.backend.backend() == 'jax'\n"
        "from test_gradients import X, Y, two_dense_model\n"
        "from restransfer.diagnostics.gradients import gradient_norms\n"
        "print(json.dumps(gradient_norms(two_dense_model(), X, Y, loss='mean_squared_error')))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    norms = json.loads(done.stdout.strip().splitlines()[-1])
    expected = hand_computed_norms()
    assert norms == pytest.approx(expected, rel=1e-5)


def test_grouping_by_block_and_stage_preserves_the_total_norm():
    keras.utils.set_random_seed(0)
    model = rt.create_model("cifar_resnet20", preprocessing="tf")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    labels = keras.utils.to_categorical(rng.integers(0, 10, 4), 10)
    by = {level: gradient_norms(model, images, labels, level=level) for level in ("layer", "block", "stage")}
    assert list(by["stage"]) == ["conv1", "conv2", "conv3", "conv4", "head"]
    assert list(by["block"])[:3] == ["conv1", "conv2_block1", "conv2_block2"]
    assert len(by["block"]) == 1 + 9 + 1
    total = {level: np.sqrt(sum(v ** 2 for v in norms.values())) for level, norms in by.items()}
    assert total["block"] == pytest.approx(total["layer"], rel=1e-4)
    assert total["stage"] == pytest.approx(total["layer"], rel=1e-4)
    # Integer labels and one-hot labels give the same gradient.
    sparse = gradient_norms(model, images, labels.argmax(-1), level="stage")
    assert sparse == pytest.approx(by["stage"], rel=1e-4)


def test_group_names():
    assert group_name("conv4_block9_2_bn", "block") == "conv4_block9"
    assert group_name("conv1_conv", "block") == "conv1"
    assert group_name("predictions", "stage") == "head"
    assert group_name("conv2_block1_1_conv", "layer") == "conv2_block1_1_conv"


def test_bad_arguments_name_the_problem():
    model = two_dense_model()
    with pytest.raises(ConfigError, match="level must be one of"):
        gradient_norms(model, X, Y, level="blocks")
    with pytest.raises(ConfigError, match="2 images, 1 labels"):
        gradient_norms(model, X, Y[:1])
    model.trainable = False
    with pytest.raises(ConfigError, match="no trainable weights"):
        gradient_norms(model, X, Y)
