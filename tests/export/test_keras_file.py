"""The portable .keras file: built-in layers only, same function as the model with custom layers."""

import keras
import numpy as np
import pytest

from restransfer import create_model
from restransfer.export.keras_file import portable_model


@pytest.mark.parametrize("preprocessing", ["torch", "caffe", "tf"])
def test_portable_model_computes_the_same_probabilities(preprocessing):
    # cifar_resnet20 has option-A shortcuts (ZeroPadShortcut); drop_path adds DropPath layers.
    model = create_model("cifar_resnet20", num_classes=4, input_shape=(32, 32, 3),
                         preprocessing=preprocessing, drop_path_rate=0.1)
    custom = {type(layer).__name__ for layer in model.layers if type(layer).__module__.startswith("restransfer")}
    assert custom == {"Preprocess", "ZeroPadShortcut", "DropPath"}
    portable = portable_model(model)
    assert all(type(layer).__module__.startswith("keras.") for layer in portable.layers)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(portable.predict_on_batch(images), model.predict_on_batch(images), atol=1e-6)


def test_grouped_convolution_becomes_keras_conv2d_with_the_same_weights():
    from restransfer.models.layers import GroupedConv2D

    inputs = keras.Input((8, 8, 16))
    outputs = GroupedConv2D(32, 3, groups=4, padding="same", name="conv2_block1_2_conv")(inputs)
    model = keras.Model(inputs, outputs)
    portable = portable_model(model)
    layer = portable.get_layer("conv2_block1_2_conv")
    assert type(layer) is keras.layers.Conv2D and layer.groups == 4
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 16)).astype("float32")
    np.testing.assert_allclose(portable.predict_on_batch(x), model.predict_on_batch(x), atol=1e-5)
