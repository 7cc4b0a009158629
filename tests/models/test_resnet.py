"""Builders: published parameter counts, keras.applications layer names, options, stage names."""

import keras
import numpy as np
import pytest

import restransfer as rt
from restransfer.errors import ConfigError
from restransfer.models.stages import layer_stage

# torchvision's published parameter counts with the 1000-class head.
PUBLISHED = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "wide_resnet50_2": 68_883_240,
}
# He et al. 2015, Table 6 (0.27M ... 1.7M); exact counts with option A and a 10-class head.
CIFAR = {
    "cifar_resnet20": 269_722,
    "cifar_resnet32": 464_154,
    "cifar_resnet44": 658_586,
    "cifar_resnet56": 853_018,
    "cifar_resnet110": 1_727_962,
}


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("name,expected", sorted({**PUBLISHED, **CIFAR}.items()))
def test_parameter_counts_equal_published(name, expected):
    # torchvision counts parameters, not BatchNorm running statistics.
    assert trainable_count(rt.create_model(name)) == expected


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "resnet152"])
def test_keras_style_matches_keras_applications(name):
    ours = rt.create_model(name, style="keras")
    theirs = getattr(keras.applications, name.replace("resnet", "ResNet"))(weights=None)
    assert ours.count_params() == theirs.count_params()

    def weighted(m):
        return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in m.layers if layer.weights}

    assert weighted(ours) == weighted(theirs)
    if name == "resnet50":
        assert ours.count_params() == 25_636_712


def test_plain_twin_has_same_layers_without_shortcuts():
    res, plain = rt.create_model("cifar_resnet20"), rt.create_model("plain_cifar_resnet20")
    assert trainable_count(res) == trainable_count(plain)
    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    assert sum(isinstance(layer, keras.layers.Add) for layer in res.layers) == 9


def test_cifar_option_b_projects():
    a = rt.create_model("cifar_resnet20")
    b = rt.create_model("cifar_resnet20", shortcut="B")
    assert trainable_count(b) > trainable_count(a)
    assert "conv3_block1_0_conv" in {layer.name for layer in b.layers}


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d", "cifar_resnet20", "plain_resnet34"])
def test_every_layer_is_named_after_its_stage(name):
    model = rt.create_model(name, input_shape=(64, 64, 3), preprocessing="auto")
    expected = ["conv1", "conv2", "conv3", "conv4"] + ([] if "cifar" in name else ["conv5"]) + ["head"]
    assert rt.stage_names(model) == expected
    for layer in model.layers:
        stage = layer_stage(layer.name)
        assert stage in expected + ["input"], layer.name


def test_stride_position_differs_between_styles():
    tv = rt.create_model("resnet50", style="torchvision", input_shape=(64, 64, 3))
    ks = rt.create_model("resnet50", style="keras", input_shape=(64, 64, 3))
    assert tv.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert tv.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert ks.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert not tv.get_layer("conv1_conv").use_bias and ks.get_layer("conv1_conv").use_bias
    assert tv.get_layer("conv1_bn").epsilon == 1e-5 and ks.get_layer("conv1_bn").epsilon == 1.001e-5


@pytest.mark.parametrize("output_stride,size", [(32, 2), (16, 4), (8, 8)])
def test_output_stride_by_dilation(output_stride, size):
    model = rt.create_model("resnet18", include_top=False, input_shape=(64, 64, 3), output_stride=output_stride)
    assert model.output_shape == (None, size, size, 512)
    out = model(np.zeros((1, 64, 64, 3), "float32"))
    assert out.shape == (1, size, size, 512)


def test_variable_input_size_and_pooling():
    model = rt.create_model("resnet18", include_top=False, input_shape=(None, None, 3), pooling="avg")
    for size in (32, 75):
        assert model(np.zeros((2, size, size, 3), "float32")).shape == (2, 512)


@pytest.mark.parametrize("norm_name,layer_type", [("group", "GroupNormalization"), ("layer", "GroupNormalization"),
                                                  ("instance", "GroupNormalization"), ("batch", "BatchNormalization")])
def test_norm_choice(norm_name, layer_type):
    model = rt.create_model("cifar_resnet20", norm=norm_name)
    norms = [layer for layer in model.layers if type(layer).__name__ == layer_type]
    assert len(norms) == 19
    probs = model(np.random.rand(2, 32, 32, 3).astype("float32"))
    assert np.allclose(np.sum(probs, -1), 1.0, atol=1e-5)
    if norm_name == "layer":
        assert {layer.groups for layer in norms} == {1}
    if norm_name == "group":
        assert model.get_layer("conv1_gn").groups == 8  # 16 channels: 8 groups of 2


def test_zero_init_residual_makes_each_block_an_identity_at_start():
    model = rt.create_model("resnet18", zero_init_residual=True, input_shape=(32, 32, 3))
    assert np.all(keras.ops.convert_to_numpy(model.get_layer("conv2_block1_2_bn").gamma) == 0)
    assert np.all(keras.ops.convert_to_numpy(model.get_layer("conv2_block1_1_bn").gamma) == 1)


def test_drop_path_rises_linearly_and_only_acts_in_training():
    model = rt.create_model("cifar_resnet20", drop_path_rate=0.2)
    rates = [layer.rate for layer in model.layers if type(layer).__name__ == "DropPath"]
    assert rates[0] == pytest.approx(0.2 / 8) and rates[-1] == pytest.approx(0.2)
    x = np.random.rand(4, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))
    # In training it drops residual branches: the same network without DropPath (same weights,
    # BatchNorm on the same batch statistics) computes something else, and the same in inference.
    plain = rt.create_model("cifar_resnet20")
    for layer in plain.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    np.testing.assert_allclose(plain(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-6)
    trained, reference = (keras.ops.convert_to_numpy(m(x, training=True)) for m in (model, plain))
    assert not np.allclose(trained, reference, rtol=1e-4, atol=1e-5)


def test_head_dropout_and_float32_logits_under_mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = rt.create_model("cifar_resnet20", num_classes=7, dropout=0.3)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.get_layer("head_dropout").rate == 0.3
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.output.dtype == "float32"


def test_replace_head_keeps_backbone_weights():
    base = rt.create_model("resnet18", input_shape=(32, 32, 3))
    new = rt.replace_head(base, 4, dropout=0.1, hidden=32)
    assert new.output_shape == (None, 4)
    assert new.get_layer("conv5_block2_2_conv") is base.get_layer("conv5_block2_2_conv")
    assert "head_hidden" in {layer.name for layer in new.layers}


def test_preprocessing_modes():
    x = np.full((1, 32, 32, 3), 255.0, "float32")
    tv = rt.create_model("cifar_resnet20", preprocessing="auto", include_top=False)
    out = keras.ops.convert_to_numpy(tv.get_layer("preprocess")(x))
    np.testing.assert_allclose(out[0, 0, 0], (255 - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375]), rtol=1e-6)
    ks = rt.create_model("cifar_resnet20", style="keras", preprocessing="auto", include_top=False)
    out = keras.ops.convert_to_numpy(ks.get_layer("preprocess")(x))
    np.testing.assert_allclose(out[0, 0, 0], 255 - np.array([103.939, 116.779, 123.68]), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"name": "resnet05"}, "Did you mean 'resnet50'"),
        ({"name": "resnet18", "norm": "batchnorm"}, "norm must be one of"),
        ({"name": "resnet18", "input_shape": (16, 16, 3)}, "at least 32x32 pixels for this model"),
        ({"name": "cifar_resnet20", "input_shape": (3, 8, 3)}, "at least 4x4 pixels for this model"),
        ({"name": "resnet18", "input_shape": (64, 64)}, "(height, width, 3)"),
        ({"name": "resnet18", "output_stride": 4}, "output_stride must be one of"),
        ({"name": "resnet18", "dropuot": 0.1}, "Did you mean 'dropout'"),
        ({"name": "resnet18", "drop_path_rate": 1.5}, "drop_path_rate must be in [0, 1)"),
    ],
)
def test_bad_options_name_the_culprit(kwargs, message):
    with pytest.raises(ConfigError) as error:
        rt.create_model(**kwargs)
    assert message in str(error.value)


def test_list_models_covers_the_families():
    names = rt.list_models()
    for name in ["resnet18", "resnet152", "resnext101_64x4d", "wide_resnet101_2", "cifar_resnet110",
                 "plain_resnet50", "plain_cifar_resnet56"]:
        assert name in names
    assert rt.list_models("cifar_*") == sorted(n for n in names if n.startswith("cifar_"))


def test_sync_batch_norm_keeps_batch_norm_names():
    model = rt.create_model("cifar_resnet20", norm="sync_batch")
    bn = model.get_layer("conv1_bn")
    assert isinstance(bn, keras.layers.BatchNormalization)
    # Under JAX data parallelism the batch statistics are global already.
    assert bn.synchronized == (keras.backend.backend() == "tensorflow")


def test_grouped_conv_equals_keras_conv2d_with_groups():
    from restransfer.models.layers import GroupedConv2D

    x = np.random.default_rng(0).random((2, 8, 8, 64)).astype("float32")
    ours = GroupedConv2D(32, 3, padding="same", groups=8)
    reference = keras.layers.Conv2D(32, 3, padding="same", groups=8)
    ours.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    model = rt.create_model("resnext50_32x4d", input_shape=(32, 32, 3))
    assert isinstance(model.get_layer("conv2_block1_2_conv"), GroupedConv2D)
    assert type(model.get_layer("conv2_block1_1_conv")) is keras.layers.Conv2D
