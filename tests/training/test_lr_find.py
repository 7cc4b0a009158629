"""The range test raises the rate exponentially, stops when the smoothed loss diverges, suggests a
rate on the falling part, and leaves the model exactly as it was."""

import sys

import keras
import numpy as np
import pytest

import restransfer as rt
from restransfer.errors import ConfigError
from restransfer.training.lr_find import ExponentialRange, lr_find, suggest


def test_rate_rises_exponentially_from_min_to_max():
    schedule = ExponentialRange(1e-6, 1.0, 7)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(7)]
    np.testing.assert_allclose(rates, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-5)


def test_suggestion_is_the_steepest_fall_before_the_minimum():
    rates = list(np.logspace(-6, 0, 61))
    log = np.log10(rates)
    # Flat, a fall centred at 1e-3, a minimum near 1e-1, then a rise (which must not count).
    curve = 2.0 - 1.5 / (1 + np.exp(-(log + 3) * 3)) + np.where(log > -1, (log + 1) * 20, 0.0)
    assert suggest(rates, list(curve)) == pytest.approx(1e-3, rel=0.13)
    assert suggest(rates, list(np.linspace(1, 2, 61))) is None  # a loss that only rises


def small_problem():
    keras.utils.set_random_seed(0)
    base = rt.create_model("cifar_resnet20", include_top=False, input_shape=(32, 32, 3), preprocessing="tf")
    model = rt.replace_head(base, num_classes=3)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (24, 32, 32, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(24) % 3]
    x += y.argmax(-1)[:, None, None, None] * 40.0  # separable: the loss can fall
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)]
    return model, batches


@pytest.mark.tensorflow
def test_range_test_diverges_and_leaves_the_model_as_it_was():
    model, batches = small_problem()
    rt.freeze_stages(model, ["conv1", "conv2"])
    before = {v.path: np.array(v) for v in model.variables}
    result = lr_find(model, batches, optimizer="adamw", min_lr=1e-5, max_lr=100.0, steps=60,
                     weight_decay=1e-4)
    assert result.stopped == "diverged"
    assert len(result.learning_rates) == len(result.losses) == len(result.smoothed) < 60
    assert result.learning_rates[0] == pytest.approx(1e-5)
    assert np.all(np.diff(result.learning_rates) > 0)
    assert result.smoothed[-1] > 4.0 * min(result.smoothed)
    assert result.suggested is not None and 1e-5 <= result.suggested < result.min_loss_lr
    # Weights, BatchNorm statistics and compile state are the caller's, untouched.
    for v in model.variables:
        np.testing.assert_array_equal(np.array(v), before[v.path], err_msg=v.path)
    assert not model.compiled and getattr(model, "optimizer", None) is None
    assert all(not layer.trainable for layer in model.layers if layer.name.startswith(("conv1", "conv2")))


@pytest.mark.tensorflow
def test_range_test_reads_a_tf_dataset_and_plots_without_pyplot(tmp_path, monkeypatch):
    import tensorflow as tf

    model, batches = small_problem()
    data = tf.data.Dataset.from_tensor_slices((np.concatenate([b[0] for b in batches]),
                                               np.concatenate([b[1] for b in batches]))).batch(8)
    result = lr_find(model, data, optimizer="sgd", optimizer_options={"momentum": 0.9}, min_lr=1e-4,
                     max_lr=1e-2, steps=8)
    assert result.stopped == "max_lr" and len(result.losses) == 8  # 3 batches, cycled
    assert result.learning_rates[-1] == pytest.approx(1e-2, rel=1e-5)
    from matplotlib.figure import Figure

    # Whatever imported pyplot before, importing it now fails: the plot must not need it.
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    fig = result.plot(tmp_path / "lr.png")
    assert isinstance(fig, Figure) and fig.axes[0].get_xscale() == "log"
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(result.to_dict()) == {"learning_rates", "losses", "smoothed", "suggested", "min_loss_lr", "stopped"}


def test_bad_bounds_and_a_frozen_model_are_refused():
    model, batches = small_problem()
    with pytest.raises(ConfigError, match="0 < min_lr < max_lr"):
        lr_find(model, batches, min_lr=1.0, max_lr=0.1)
    with pytest.raises(ConfigError, match="at least 5 steps"):
        lr_find(model, batches, steps=2)
    rt.freeze_stages(model, rt.stage_names(model))
    with pytest.raises(ConfigError, match="every layer is frozen"):
        lr_find(model, batches)
