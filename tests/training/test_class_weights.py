"""Class weights: scikit-learn's balanced weights, the auto rule, and weighted batches that train
exactly as Keras' own ``class_weight`` (one-hot labels) and weigh soft labels by expectation."""

import keras
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils.class_weight import compute_class_weight

from restransfer.errors import ConfigError
from restransfer.training.balanced_accuracy import BalancedAccuracy
from restransfer.training.class_weights import decide_class_weights, sample_weights, weigh_batches

pytestmark = pytest.mark.tensorflow

NAMES = ["5", "6", "7", "8", "9"]
COUNTS = [36, 18, 9, 5, 3]


def test_balanced_and_auto_equal_scikit_learn():
    y = np.repeat(np.arange(5), COUNTS)
    expected = compute_class_weight("balanced", classes=np.arange(5), y=y)
    decided = decide_class_weights("balanced", COUNTS, NAMES)
    np.testing.assert_allclose(list(decided.weights.values()), expected)
    assert list(decided.weights) == NAMES
    auto = decide_class_weights("auto", COUNTS, NAMES)
    assert "36 / 3 = 12 >= 3" in auto.reason and auto.weights is None
    np.testing.assert_allclose(list(auto.prior.values()), np.array(COUNTS) / sum(COUNTS))


def test_auto_stays_off_below_three_to_one_and_none_is_none():
    assert decide_class_weights("auto", [29, 10], ["a", "b"]).prior is None
    assert decide_class_weights("auto", [30, 10], ["a", "b"]).prior is not None
    assert decide_class_weights("none", COUNTS, NAMES).vector() is None


def test_given_weights_default_to_one_and_unknown_labels_are_named():
    decided = decide_class_weights({"9": 4.0}, COUNTS, NAMES)
    assert decided.weights == {"5": 1.0, "6": 1.0, "7": 1.0, "8": 1.0, "9": 4.0}
    with pytest.raises(ConfigError, match="'10'.*not a class.*5, 6, 7, 8, 9"):
        decide_class_weights({"10": 2.0}, COUNTS, NAMES)


def test_soft_labels_weigh_by_the_expected_class_weight():
    vector = np.array([0.5, 2.0, 4.0], np.float32)
    mixed = np.array([[0.3, 0.7, 0.0], [0.0, 0.0, 1.0]], np.float32)  # MixUp of classes 0 and 1; a one-hot
    np.testing.assert_allclose(sample_weights(mixed, vector), [0.3 * 0.5 + 0.7 * 2.0, 4.0], rtol=1e-6)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((np.zeros((2, 4), np.float32), mixed)).batch(2)
    _, _, weights = next(iter(weigh_batches(ds, vector)))
    np.testing.assert_allclose(weights.numpy(), sample_weights(mixed, vector), rtol=1e-6)
    assert weigh_batches(ds, None) is ds


def test_weighted_batches_train_as_keras_class_weight():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 6)).astype("float32")
    labels = np.repeat(np.arange(3), [14, 7, 3])
    y = np.eye(3, dtype="float32")[labels]
    decided = decide_class_weights("balanced", np.bincount(labels), ["a", "b", "c"])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    def model():
        keras.utils.set_random_seed(1)
        net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
        net.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
        return net

    reference, ours = model(), model()
    reference.fit(ds, class_weight=dict(enumerate(decided.vector())), epochs=2, verbose=0, shuffle=False)
    ours.fit(weigh_batches(ds, decided.vector()), epochs=2, verbose=0, shuffle=False)
    unweighted = model()
    unweighted.fit(ds, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(reference.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(reference.get_weights()[0], unweighted.get_weights()[0])


def test_balanced_accuracy_metric_equals_scikit_learn():
    rng = np.random.default_rng(3)
    labels = rng.choice(4, size=50, p=[0.6, 0.25, 0.15, 0.0])  # class 3 has no image
    probabilities = rng.dirichlet(np.ones(4), size=50).astype("float32")
    metric = BalancedAccuracy(4)
    metric.update_state(np.eye(4)[labels[:30]], probabilities[:30])
    metric.update_state(np.eye(4)[labels[30:]], probabilities[30:])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = balanced_accuracy_score(labels, probabilities.argmax(-1))
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
