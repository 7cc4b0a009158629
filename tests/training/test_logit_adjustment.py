"""The logit-adjusted loss equals Keras' cross-entropy on logits shifted by log(prior), soft labels included."""

import keras
import numpy as np

from restransfer.training.class_weights import decide_class_weights
from restransfer.training.logit_adjustment import LogitAdjustedCrossentropy


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
