"""Precise BN sets trainable BatchNorm statistics to the exact mean/variance of one pass; frozen ones stay.

The data are NumPy arrays, so the file also runs on JAX without TensorFlow (tests/run.sh).
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from restransfer.errors import ConfigError
from restransfer.models.layers import DropPath
from restransfer.training.precise_bn import precise_bn, trainable_batch_norms

EPS = 1e-3


def chain_model(drop_path: float = 0.0) -> keras.Model:
    """image -> 1x1 projection -> [drop path] -> BN a (trains) -> BN frozen -> BN b (trains)."""
    inputs = keras.Input((4, 4, 3), name="image")
    x = keras.layers.Dense(5, name="conv2_proj")(inputs)
    if drop_path:
        x = DropPath(drop_path, name="conv2_drop")(x)
    x = keras.layers.BatchNormalization(epsilon=EPS, name="conv2_bn_a")(x)
    x = keras.layers.BatchNormalization(epsilon=EPS, name="conv2_bn_frozen")(x)
    x = keras.layers.BatchNormalization(epsilon=EPS, name="conv3_bn_b")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        # Non-trivial scales, offsets and (stale) statistics everywhere.
        layer.set_weights([rng.normal(size=w.shape).astype("float32") + (2.0 if "variance" in v.path else 0.0)
                           for w, v in zip(layer.get_weights(), layer.weights)])
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_variance.assign(np.abs(np.asarray(layer.moving_variance)) + 0.5)
    model.get_layer("conv2_bn_frozen").trainable = False
    return model


def numpy_reference(model: keras.Model, images: np.ndarray, batch_size: int) -> dict:
    """Exact mean/variance over the pass of each trainable BN input, computed in float64 NumPy."""
    def weights(name):
        return [np.asarray(w, np.float64) for w in model.get_layer(name).get_weights()]

    kernel, bias = weights("conv2_proj")
    gamma_a, beta_a = weights("conv2_bn_a")[:2]
    gamma_f, beta_f, mean_f, var_f = weights("conv2_bn_frozen")
    inputs_a, inputs_b = [], []
    for start in range(0, len(images), batch_size):
        h = images[start:start + batch_size].astype(np.float64) @ kernel + bias
        inputs_a.append(h.reshape(-1, 5))
        # Training mode: the batch's own statistics (biased variance, as Keras).
        mu, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
        z = (h - mu) / np.sqrt(var + EPS) * gamma_a + beta_a
        z = (z - mean_f) / np.sqrt(var_f + EPS) * gamma_f + beta_f  # frozen: inference mode
        inputs_b.append(z.reshape(-1, 5))
    a, b = np.concatenate(inputs_a), np.concatenate(inputs_b)
    return {"conv2_bn_a": (a.mean(0), a.var(0)), "conv3_bn_b": (b.mean(0), b.var(0))}


def test_statistics_are_the_exact_mean_and_variance_of_the_pass_and_frozen_bn_is_bit_identical():
    model = chain_model()
    # 50 images at batch 16: batches of 16, 16, 16 and 2, combined exactly, not averaged.
    images = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4, 4, 3)).astype("float32")
    reference = numpy_reference(model, images, batch_size=16)
    frozen_before = [np.array(w) for w in model.get_layer("conv2_bn_frozen").weights]
    weights_before = [np.array(w) for w in model.trainable_weights]

    result = precise_bn(model, images, batch_size=16)

    assert result.layers == ["conv2_bn_a", "conv3_bn_b"]
    assert (result.images, result.batches) == (50, 4)
    for name, (mean, variance) in reference.items():
        layer = model.get_layer(name)
        np.testing.assert_allclose(np.asarray(layer.moving_mean), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(layer.moving_variance), variance, rtol=1e-5, atol=1e-6)
    for before, after in zip(frozen_before, model.get_layer("conv2_bn_frozen").weights):
        assert np.array_equal(before, np.asarray(after))
    for before, after in zip(weights_before, model.trainable_weights):
        assert np.array_equal(before, np.asarray(after))


def test_an_average_of_batch_statistics_would_differ_so_the_test_above_can_fail():
    # Guard for the test above: with a 2-image last batch, the mean of the four batch
    # variances is far from the pass's variance, so equality really checks exact pooling.
    model = chain_model()
    images = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4, 4, 3)).astype("float32")
    kernel, bias = [np.asarray(w, np.float64) for w in model.get_layer("conv2_proj").get_weights()]
    h = images.astype(np.float64) @ kernel + bias
    averaged = np.mean([h[s:s + 16].var(axis=(0, 1, 2)) for s in range(0, 50, 16)], axis=0)
    exact = numpy_reference(model, images, 16)["conv2_bn_a"][1]
    assert np.max(np.abs(averaged - exact) / exact) > 1e-3


def test_stochastic_depth_is_off_for_the_pass_and_restored_after():
    images = np.random.default_rng(2).normal(size=(24, 4, 4, 3)).astype("float32")
    noisy, plain = chain_model(drop_path=0.5), chain_model()
    precise_bn(noisy, images, batch_size=8)
    precise_bn(plain, images, batch_size=8)
    for name in ("conv2_bn_a", "conv3_bn_b"):
        np.testing.assert_allclose(np.asarray(noisy.get_layer(name).moving_variance),
                                   np.asarray(plain.get_layer(name).moving_variance), rtol=1e-6)
    assert noisy.get_layer("conv2_drop").rate == 0.5


def test_restransfer_model_with_frozen_stages():
    from restransfer.models.registry import create_model
    from restransfer.models.stages import freeze_stages

    model = create_model("cifar_resnet20", num_classes=3, input_shape=(32, 32, 3))
    freeze_stages(model, ["conv1", "conv2"])
    frozen = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization) and not layer.trainable]
    before = {layer.name: [np.array(w) for w in layer.weights] for layer in frozen}
    images = np.random.default_rng(3).uniform(0, 255, size=(20, 32, 32, 3)).astype("float32")
    # The first trainable BN's input depends on frozen layers only, so inference mode computes it.
    first = trainable_batch_norms(model)[0]
    assert first.name.startswith("conv3_")
    inputs = keras.Model(model.inputs, first.input).predict(images, verbose=0).astype(np.float64)

    precise_bn(model, images, batch_size=8)

    np.testing.assert_allclose(np.asarray(first.moving_mean), inputs.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(first.moving_variance), inputs.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    for layer in frozen:
        for old, new in zip(before[layer.name], layer.weights):
            assert np.array_equal(old, np.asarray(new)), layer.name


def test_no_trainable_batch_norm_runs_nothing_and_foreign_layers_are_refused():
    model = chain_model()
    for layer in model.layers:
        layer.trainable = False
    assert precise_bn(model, np.zeros((4, 4, 4, 3), "float32")).layers == []
    stranger = keras.layers.BatchNormalization(name="stranger")
    with pytest.raises(ConfigError, match="'stranger' is not a BatchNormalization layer of model"):
        precise_bn(chain_model(), np.zeros((4, 4, 4, 3), "float32"), layers=[stranger])


_DISTRIBUTED = """
    import json
    import numpy as np
    {before}
    import sys
    sys.path.insert(0, {tests!r})
    from training.test_precise_bn import chain_model
    from restransfer.training.precise_bn import precise_bn
    images = np.random.default_rng(0).normal(3.0, 2.0, size=(48, 4, 4, 3)).astype("float32")
    single = chain_model()
    precise_bn(single, images, batch_size=16)
    {enable}
    {scope}
        model = chain_model()
    result = precise_bn(model, images, batch_size=16)
    # BN a's input does not depend on how a batch is split over replicas; BN b's does.
    layer, reference = model.get_layer("conv2_bn_a"), single.get_layer("conv2_bn_a")
    print(json.dumps({{"images": result.images,
                       "mean": float(np.max(np.abs(np.asarray(layer.moving_mean) - np.asarray(reference.moving_mean)))),
                       "var": float(np.max(np.abs(np.asarray(layer.moving_variance) - np.asarray(reference.moving_variance)))),
                       "tensorflow": "tensorflow" in sys.modules,
                       "moved": float(np.max(np.abs(np.asarray(model.get_layer("conv3_bn_b").moving_mean))))}}))
"""


def _run_distributed(before: str, enable: str, scope: str, env: dict) -> dict:
    code = textwrap.dedent(_DISTRIBUTED).format(before=before, enable=enable, scope=scope,
                                                tests=os.path.dirname(os.path.dirname(__file__)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.tensorflow
def test_under_mirrored_strategy_on_two_logical_cpus():
    setup = ("import tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
             "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
             "strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])")
    out = _run_distributed(setup, "", "with strategy.scope():", {"KERAS_BACKEND": "tensorflow"})
    assert out["images"] == 48
    assert out["mean"] < 1e-5 and out["var"] < 1e-4
    assert out["moved"] > 0


def test_under_jax_data_parallel_on_two_host_devices_without_tensorflow():
    # Here, not at the top: the subprocesses import this module, and tests/conftest.py's imports
    # must not follow TensorFlow's there.
    from tests.conftest import TWO_HOST_DEVICES

    pytest.importorskip("jax")
    before = "import jax; assert len(jax.devices()) == 2, jax.devices()"
    enable = "import keras; keras.distribution.set_distribution(keras.distribution.DataParallel())"
    out = _run_distributed(before, enable, "if True:", TWO_HOST_DEVICES)
    assert not out["tensorflow"], "precise BN on JAX imported TensorFlow"
    assert out["images"] == 48
    assert out["mean"] < 1e-5 and out["var"] < 1e-4


def test_recipe_switch_auto_is_on_for_small_training_sets():
    from restransfer.training.precise_bn import AUTO_MAX_IMAGES, precise_bn_enabled, precise_bn_steps

    assert precise_bn_enabled("auto", 50)[0] and not precise_bn_enabled("auto", AUTO_MAX_IMAGES + 1)[0]
    assert precise_bn_enabled(True, 10 ** 6) == (True, "on") and precise_bn_enabled(False, 5) == (False, "off")
    assert precise_bn_steps(50, 16) == 4 and precise_bn_steps(10 ** 6, 32) == AUTO_MAX_IMAGES // 32
    with pytest.raises(ConfigError, match="precise_bn must be auto, true or false. Received precise_bn='yes'"):
        precise_bn_enabled("yes", 5)
