"""Linear probe: separable data scores 1.0, random labels score near chance, per stage."""

import keras
import numpy as np
import pytest

import restransfer as rt
from restransfer.diagnostics.probe import holdout_probe_accuracy, linear_probe, probe_accuracy, stage_features
from restransfer.errors import ConfigError


def test_separable_features_score_perfectly_and_noise_scores_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    separable = rng.normal(size=(90, 5)) + 10 * np.eye(3, 5)[labels]
    assert probe_accuracy(separable, labels) == (1.0, 0.0)
    noise = rng.normal(size=(90, 5))
    mean, _ = probe_accuracy(noise, rng.permutation(labels))
    assert mean < 0.6  # chance is 1/3
    one_hot = np.eye(3)[labels]
    assert probe_accuracy(separable, one_hot) == (1.0, 0.0)


def test_holdout_probe_is_fitted_on_train_and_scored_on_val():
    rng = np.random.default_rng(3)
    centres = 6 * np.eye(3, 4)
    y_train, y_val = np.repeat([0, 1, 2], 10), np.repeat([0, 1, 2], 40)
    x_train = rng.normal(size=(30, 4)) + centres[y_train]
    x_val = rng.normal(size=(120, 4)) + centres[y_val]
    assert holdout_probe_accuracy(x_train, y_train, x_val, np.eye(3)[y_val]) > 0.95
    # Labels it was not fitted on cannot be guessed: a probe that saw the validation labels could.
    assert holdout_probe_accuracy(x_train, y_train, x_val, rng.permutation(y_val)) < 0.5


@pytest.mark.tensorflow
def test_every_stage_separates_bright_from_dark_images():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 20)
    images = rng.uniform(0, 60, (40, 32, 32, 3)) + 180 * labels[:, None, None, None]
    keras.utils.set_random_seed(0)
    model = rt.create_model("cifar_resnet20", preprocessing="tf")
    rows = linear_probe(model, images, labels, folds=4)
    assert [r.stage for r in rows] == ["conv1", "conv2", "conv3", "conv4"]
    assert [r.features for r in rows] == [16, 16, 32, 64]
    assert all(r.accuracy == 1.0 for r in rows), rows
    held_out = linear_probe(model, images[::2], labels[::2], val=(images[1::2], np.eye(2)[labels[1::2]]))
    assert [(r.stage, r.accuracy, r.std) for r in held_out] == [(r.stage, 1.0, 0.0) for r in rows]


@pytest.mark.tensorflow
def test_features_are_pooled_stage_outputs():
    model = rt.create_model("cifar_resnet20", preprocessing="tf")
    images = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    features = stage_features(model, images, ["conv3"])
    stage_out = keras.Model(model.inputs, model.get_layer("conv3_block3_out").output).predict(images, verbose=0)
    np.testing.assert_allclose(features["conv3"], stage_out.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="smallest class has 2"):
        probe_accuracy(np.zeros((12, 2)), [0] * 10 + [1] * 2)
    model = rt.create_model("cifar_resnet20")
    with pytest.raises(ConfigError, match=r"no stage \['conv5'\]"):
        stage_features(model, np.zeros((1, 32, 32, 3)), ["conv5"])


@pytest.mark.parametrize("classes", [2, 4])
def test_softmax_probe_is_the_fitted_scikit_learn_pipeline_as_one_dense_layer(classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from restransfer.diagnostics.probe import fit_softmax_probe

    rng = np.random.default_rng(0)
    labels = np.arange(60) % classes
    features = rng.normal(size=(60, 8)) * rng.uniform(0.1, 5, size=8) + 3.0 + labels[:, None] * 0.5
    kernel, bias = fit_softmax_probe(features, labels, classes)
    logits = features @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(features, labels)
    np.testing.assert_allclose(probabilities, reference.predict_proba(features), atol=2e-5)
    with pytest.raises(ConfigError, match=rf"classes \[{classes}\] have none"):
        fit_softmax_probe(features, labels, classes + 1)
