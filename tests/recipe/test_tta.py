"""Test-time augmentation: the identity view alone is plain prediction; a flip averages the model's
probabilities over the images and their mirror images; crops keep the input size."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from restransfer.data.tta import tta_views
from restransfer.diagnostics.evaluation import predict, predict_dataset
from restransfer.recipe.tta import predict_batch_tta, views_of

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def model_and_data():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(inputs)  # position-dependent: a flip changes the output
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Rescaling(1 / 255)(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (10, 8, 8, 3)).astype("float32")
    labels = np.eye(4, dtype="float32")[rng.integers(0, 4, 10)]
    return model, images, tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)


def test_identity_alone_is_plain_prediction(model_and_data):
    model, images, dataset = model_and_data
    plain, labels = predict_dataset(model, dataset)
    views = tta_views(flip=False, crops=0)
    assert [v.name for v in views] == ["identity"]
    ours, same_labels = predict(model, dataset, views)
    np.testing.assert_array_equal(ours, plain)
    np.testing.assert_array_equal(labels, same_labels)
    np.testing.assert_array_equal(predict_batch_tta(model, images, views), predict_batch_tta(model, images, None))


def test_flip_is_the_mean_over_flipped_copies(model_and_data):
    model, images, dataset = model_and_data
    expected = (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1, :].copy(), verbose=0)) / 2
    views = views_of(True)
    assert [v.name for v in views] == ["identity", "flip"]
    ours, _ = predict(model, dataset, views)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict_batch_tta(model, images, views), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours, model.predict(images, verbose=0))


def test_crops_keep_the_size_and_the_centre_crop_is_a_resized_centre():
    images = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    views = tta_views(flip=True, crops=5)
    assert len(views) == 12 and views[2].name == "crop-centre"
    for view in views:
        assert tuple(np.asarray(view.apply(images)).shape) == images.shape
    centre = np.asarray(views[2].apply(images))
    expected = tf.image.resize(images[:, 0:7, 0:7, :], (8, 8), method="bilinear").numpy()
    np.testing.assert_allclose(centre, expected, rtol=1e-6)
    assert views_of(None) is None and views_of({"flip": False, "crops": 0}) is None
