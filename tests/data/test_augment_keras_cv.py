import numpy as np
import pytest

from restransfer.data.augment import build_augment
from restransfer.data.schema import KERAS_CV_LAYERS, AugmentConfig
from restransfer.errors import ConfigError


def batch(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (8, 48, 48, 3)).astype("float32")
    labels = np.eye(4, dtype="float32")[rng.integers(0, 4, 8)]
    return images, labels


def test_schema_takes_keras_cv_layers_by_name_and_refuses_others():
    assert AugmentConfig.model_validate({"keras_cv": ["GridMask"]}).keras_cv == {"GridMask": {}}
    config = AugmentConfig.model_validate({"keras_cv": {"GridMask": {"ratio_factor": (0, 0.5)}, "ChannelShuffle": True}})
    assert config.keras_cv == {"GridMask": {"ratio_factor": (0, 0.5)}, "ChannelShuffle": {}} and config.enabled
    with pytest.raises(ValueError, match="GridMask"):
        AugmentConfig.model_validate({"keras_cv": ["AugMix"]})  # Keras core has AugMix: not offered


@pytest.mark.parametrize("name", KERAS_CV_LAYERS)
def test_each_keras_cv_layer_runs_in_the_pipeline_and_keeps_images_valid(name):
    pytest.importorskip("keras_cv")
    import tensorflow as tf

    images, labels = batch()
    augment = build_augment(AugmentConfig.model_validate({"keras_cv": [name]}), (48, 48), seed=0)
    out_images, out_labels = tf.function(augment)(tf.constant(images), tf.constant(labels))
    out_images, out_labels = out_images.numpy(), out_labels.numpy()
    assert out_images.shape == images.shape and out_images.dtype == np.float32
    assert np.isfinite(out_images).all() and out_images.min() >= 0 and out_images.max() <= 255
    assert not np.allclose(out_images, images)  # it did something
    np.testing.assert_allclose(out_labels.sum(axis=-1), 1.0, atol=1e-5)
    if name != "FourierMix":
        np.testing.assert_array_equal(out_labels, labels)  # only FourierMix mixes labels


def test_bad_keras_cv_arguments_name_the_layer():
    pytest.importorskip("keras_cv")
    with pytest.raises(ConfigError, match=r"augment.keras_cv.GridMask: .*bogus"):
        build_augment(AugmentConfig.model_validate({"keras_cv": {"GridMask": {"bogus": 1}}}), (48, 48))
