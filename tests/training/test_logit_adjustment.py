"""The logit-adjusted loss equals Keras' cross-entropy on logits shifted by log(prior), soft labels included;
the post-hoc adjustment folded into the classifier divides its probabilities by the prior."""

import keras
import numpy as np
import pytest

from restransfer.errors import ConfigError
from restransfer.training.class_weights import decide_class_weights
from restransfer.training.logit_adjustment import LogitAdjustedCrossentropy, fold_prior


def test_loss_is_keras_crossentropy_of_shifted_logits_and_reloads():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3)).astype("float32")
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]
    labels[0] = [0.7, 0.3, 0.0]  # a MixUp label
    prior = np.array([0.6, 0.3, 0.1])
    reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(
        labels, logits + np.log(prior).astype("float32"))
    loss = LogitAdjustedCrossentropy(prior.tolist(), label_smoothing=0.1)
    np.testing.assert_allclose(float(loss(labels, probabilities)), float(reference), rtol=1e-5)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    np.testing.assert_allclose(float(again(labels, probabilities)), float(reference), rtol=1e-5)


def test_logit_adjusted_setting_gives_the_prior_and_no_weights():
    decided = decide_class_weights("logit_adjusted", [30, 10], ["a", "b"])
    assert decided.weights is None and decided.prior == {"a": 0.75, "b": 0.25}


def test_posthoc_setting_gives_the_prior_after_training_only():
    decided = decide_class_weights("logit_adjusted_posthoc", [30, 10], ["a", "b"])
    assert decided.weights is None and decided.prior is None and decided.posthoc_prior == {"a": 0.75, "b": 0.25}


def test_folded_prior_divides_the_probabilities_by_it():
    from restransfer.models.heads import classifier
    from restransfer.training.calibration import logits_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, classifier(inputs, 3))
    x = np.random.default_rng(1).normal(size=(16, 4, 4, 8)).astype("float32")
    logits = np.asarray(logits_model(model).predict(x, verbose=0), np.float64)
    prior = np.array([0.7, 0.2, 0.1])
    fold_prior(model, prior.tolist())
    expected = np.exp(logits) / prior
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)
    # A uniform prior changes nothing; a prior of the wrong width or with a zero share is refused.
    before = model.predict(x, verbose=0)
    fold_prior(model, [1 / 3] * 3)
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-6)
    with pytest.raises(ConfigError, match=r"one positive share per class \(3\); received \[0.5, 0.5\]"):
        fold_prior(model, [0.5, 0.5])
    with pytest.raises(ConfigError, match="one positive share per class"):
        fold_prior(model, [0.5, 0.5, 0.0])
