"""Temperature scaling: the fitted temperature is the NLL minimum, ECE is the textbook sum, and folding
the temperature into the classifier divides the logits without changing any prediction."""

import keras
import numpy as np
import pytest

from restransfer.errors import ConfigError
from restransfer.models.heads import classifier
from restransfer.training.calibration import (
    adaptive_calibration_error,
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
    logits_model,
    negative_log_likelihood,
    plot_reliability,
    reliability_bins,
    softmax,
)


def overconfident(n=400, classes=4, seed=0):
    """Logits whose true temperature is 3: labels drawn from softmax(z / 3)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (n, classes))
    p = softmax(logits / 3.0)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return logits, labels


def test_temperature_is_the_nll_minimum_of_a_fine_grid():
    logits, labels = overconfident()
    result = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(0.2), np.log(10), 4001))
    best = grid[np.argmin([negative_log_likelihood(logits, labels, t) for t in grid])]
    assert result.temperature == pytest.approx(best, rel=2e-3)
    assert 2.2 < result.temperature < 4.0  # the temperature the labels were drawn at, within sampling noise
    assert result.nll_after < result.nll_before and result.ece_after < result.ece_before
    assert result.images == 400 and result.bins == 15 and not result.at_bound


def test_held_out_images_all_classified_correctly_leave_the_temperature_at_1():
    logits, _ = overconfident(n=20)
    labels = logits.argmax(-1)
    # The NLL keeps falling as T -> 0: there is no minimum to fit.
    nll = [negative_log_likelihood(logits, labels, t) for t in (1.0, 0.5, 0.1, 0.05)]
    assert all(a > b for a, b in zip(nll, nll[1:]))
    result = fit_temperature(logits, labels, fitted_on="held-out validation")
    assert result.temperature == 1.0 and result.no_minimum and not result.at_bound
    assert result.nll_after == result.nll_before and result.ece_after == result.ece_before
    assert "all 20 held-out validation images are classified correctly" in result.describe()
    # One mistake gives the NLL a minimum again.
    labels[0] = (labels[0] + 1) % 4
    assert not fit_temperature(logits, labels).no_minimum


def test_nll_matches_keras_crossentropy():
    logits, labels = overconfident(n=50)
    reference = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, (logits / 2.0).astype("float32"))
    assert negative_log_likelihood(logits, labels, 2.0) == pytest.approx(float(reference), rel=1e-5)


def test_ece_is_the_weighted_gap_per_bin():
    # Confidences 0.95, 0.95 (one right), 0.55 (right), 0.7 (wrong), in three of the 15 bins.
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.7, 0.3]])
    labels = np.array([0, 1, 1, 1])
    # Bin of 0.95: mean conf 0.95, accuracy 0.5 -> gap 0.45, weight 2/4; bin of 0.55: gap 0.45,
    # weight 1/4; bin of 0.7: accuracy 0, gap 0.7, weight 1/4.
    expected = 0.5 * 0.45 + 0.25 * 0.45 + 0.25 * 0.7
    assert expected_calibration_error(p, labels) == pytest.approx(expected)
    stats = reliability_bins(p, labels)
    assert stats["count"].sum() == 4 and stats["count"][14] == 2
    assert expected_calibration_error(np.eye(3), np.arange(3)) == pytest.approx(0.0)


def test_adaptive_ece_bins_hold_equal_counts():
    # Sorted confidences 0.55 (right), 0.7 (wrong) | 0.95, 0.95 (one right): two bins of two images.
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.7, 0.3]])
    labels = np.array([0, 1, 1, 1])
    expected = 0.5 * abs(0.625 - 0.5) + 0.5 * abs(0.95 - 0.5)
    assert adaptive_calibration_error(p, labels, bins=2) == pytest.approx(expected)
    # One image per bin: the mean of |confidence - correct| over images.
    assert adaptive_calibration_error(p, labels, bins=4) == pytest.approx((0.05 + 0.95 + 0.45 + 0.7) / 4)
    # More bins than images: empty bins are skipped, not counted.
    assert adaptive_calibration_error(p, labels, bins=15) == pytest.approx((0.05 + 0.95 + 0.45 + 0.7) / 4)
    with pytest.raises(ConfigError, match="at least one prediction"):
        adaptive_calibration_error(np.zeros((0, 2)), np.zeros(0, int))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ConfigError, match="non-finite"):
        fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(ConfigError, match="logits of shape"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ConfigError, match="positive"):
        fold_temperature(None, -1.0)


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    features = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, classifier(features, 3))


def test_folding_divides_the_logits_and_keeps_every_argmax():
    model = tiny_model()
    x = np.random.default_rng(0).normal(0, 3, (64, 6)).astype("float32")
    logits = logits_model(model).predict_on_batch(x)
    before = model.predict_on_batch(x)
    fold_temperature(model, 2.5)
    after = model.predict_on_batch(x)
    np.testing.assert_allclose(after, softmax(logits / 2.5), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(after.argmax(-1), before.argmax(-1))
    assert after.max(-1).mean() < before.max(-1).mean()


def test_folding_keeps_float32_logits_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = tiny_model()
        x = np.random.default_rng(1).normal(0, 3, (16, 6)).astype("float32")
        before = model.predict_on_batch(x)
        fold_temperature(model, 0.5)
        layer = model.get_layer("predictions")
        assert layer.kernel.dtype == "float32" and layer.compute_dtype == "float32"
        after = model.predict_on_batch(x)
        assert after.dtype == np.float32
        np.testing.assert_array_equal(after.argmax(-1), before.argmax(-1))
    finally:
        keras.config.set_dtype_policy(previous)


def test_reliability_diagram_is_a_png(tmp_path):
    logits, labels = overconfident(n=60)
    path = plot_reliability([softmax(logits), softmax(logits / 3)], labels, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
