"""The feature cache computes the same network: the split is exact, the cached features are the
frozen prefix's output, and a training step on them computes the step the images give."""

import json
import zipfile

import keras
import numpy as np
import pytest

import restransfer as rt
from restransfer.errors import ConfigError
from restransfer.models.stages import layer_stage
from restransfer.training.feature_cache import (
    cache_blockers,
    cache_decision,
    cache_features,
    cacheable_stages,
    compute_features,
    feature_dataset,
    recipe_blockers,
    split_model,
    val_feature_batch,
)

pytestmark = pytest.mark.tensorflow


def images(count=12, seed=0, size=32):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype("float32")


def target_model(**options):
    base = rt.create_model("cifar_resnet20", include_top=False, input_shape=(32, 32, 3), preprocessing="tf",
                           **options)
    return rt.replace_head(base, num_classes=3)


@pytest.mark.parametrize("stage", ["input", "conv1", "conv2", "conv3", "conv4"])
def test_suffix_of_prefix_equals_the_model_exactly(stage):
    keras.utils.set_random_seed(0)
    model = target_model()
    x = images(6)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    split = split_model(model, stage)
    features = split.prefix(x, training=False)
    got = keras.ops.convert_to_numpy(split.suffix(features, training=False))
    np.testing.assert_array_equal(got, expected)
    # The suffix is made of the model's own layers: training it trains the model.
    assert all(layer is model.get_layer(layer.name) for layer in split.suffix.layers[1:])
    assert split.stages == (["conv1", "conv2", "conv3", "conv4"][: ["conv1", "conv2", "conv3", "conv4"]
                                                                    .index(stage) + 1] if stage != "input" else [])


def test_imagenet_style_resnet_splits_exactly_after_every_stage():
    keras.utils.set_random_seed(1)
    base = rt.create_model("resnet18", include_top=False, input_shape=(32, 32, 3), preprocessing="torch")
    model = rt.replace_head(base, num_classes=4, hidden=8)
    x = images(3, seed=1)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    for stage in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        split = split_model(model, stage)
        got = keras.ops.convert_to_numpy(split.suffix(split.prefix(x, training=False), training=False))
        np.testing.assert_array_equal(got, expected, err_msg=stage)


def test_head_only_cut_moves_past_the_pooling_to_cache_vectors():
    model = target_model()
    split = split_model(model, "conv4")
    assert split.boundary == "avg_pool" and split.feature_shape == (64,)
    assert [layer.name for layer in split.suffix.layers[1:]] == ["predictions", "head_probabilities"]
    # A trainable layer is never moved into the prefix.
    assert split_model(model, "conv3").boundary == "conv3_block3_out"


def test_validation_features_are_batched_by_bytes_not_by_the_training_batch():
    model = target_model()
    pooled, maps = split_model(model, "conv4"), split_model(model, "conv1")  # 64 floats; 32x32x16 floats
    assert val_feature_batch(pooled, 5, 200) == 200  # one validation step
    assert val_feature_batch(maps, 5, 10_000) == 32 * 2**20 // (32 * 32 * 16 * 4) == 512
    assert val_feature_batch(maps, 1024, 10_000) == 1024  # never below the training batch
    x, y = images(7), np.eye(3, dtype="float32")[np.arange(7) % 3]
    batches = feature_dataset(x, y, 2, shuffle=False)
    rt.freeze_stages(model, "all_but_head")
    cache = cache_features(model, "conv4", batches, batches, batch_size=2)
    assert [len(labels) for _, labels in cache.val.as_numpy_iterator()] == [7]
    assert [len(labels) for _, labels in cache.train.as_numpy_iterator()] == [2, 2, 2, 1]


def test_a_skip_connection_across_the_cut_is_refused():
    inputs = keras.Input((8,), name="image")
    a = keras.layers.Dense(4, name="conv1_dense")(inputs)
    b = keras.layers.Dense(4, name="conv2_dense")(a)
    out = keras.layers.Add(name="conv2_add")([a, b])  # conv2 reads conv1's first layer too
    c = keras.layers.Dense(2, name="conv2_z")(out)
    model = keras.Model(inputs, keras.layers.Dense(2, name="conv1_late")(c))
    with pytest.raises(ConfigError, match="cannot be cut after stage 'conv1'"):
        split_model(model, "conv1")
    with pytest.raises(ConfigError, match="no backbone stage 'conv7'"):
        split_model(target_model(), "conv7")


def test_cacheable_stages_are_the_leading_frozen_run():
    stages = rt.stage_names(target_model())
    assert cacheable_stages(stages, ["conv1", "conv2", "conv4"]) == ["conv1", "conv2"]
    assert cacheable_stages(stages, ["conv2", "conv3"]) == []
    assert cacheable_stages(stages, ["conv1", "conv2", "conv3", "conv4"]) == ["conv1", "conv2", "conv3", "conv4"]
    assert cacheable_stages(stages, ["conv1", "conv2", "conv3", "conv4", "head"]) == []  # nothing trains


def test_blockers_name_trainable_and_random_layers():
    model = target_model(drop_path_rate=0.2)
    rt.freeze_stages(model, ["conv1", "conv2"])
    assert cache_blockers(model, ["conv1"]) == []  # conv1 has no residual branch to drop
    reasons = cache_blockers(model, ["conv1", "conv2", "conv3"])
    # Stochastic depth rises from 0 (conv2_block1, not random) by 0.2 / 8 per block.
    assert reasons[0] == "conv2_block2_drop (DropPath, rate 0.025) is random in training", reasons
    assert any(r.startswith("conv3_block1_1_conv is trainable") for r in reasons), reasons
    rt.freeze_stages(model, ["conv1", "conv2", "conv3"])
    with pytest.raises(ConfigError, match="cannot be cached: .*DropPath"):
        cache_features(model, "conv3", feature_dataset(images(4), np.eye(3)[[0, 1, 2, 0]], 2, shuffle=False),
                       batch_size=2)


def test_feature_batches_follow_the_image_pipelines_order():
    # Same seed, same ops: the cached phase sees exactly the batches the uncached phase sees.
    import tensorflow as tf

    from restransfer.data import load_data

    x = images(9, seed=2).round()
    y = np.arange(9) % 3
    bundle = load_data(source="arrays", x_train=x, y_train=y, x_val=x[:3], y_val=y[:3], image_size=32,
                       batch_size=4, cache="memory", seed=5)
    cached = feature_dataset(x, np.eye(3, dtype="float32")[y], 4, shuffle=True, seed=5, drop_small_last=True)
    for _ in range(3):  # three epochs: a new order each, the same on both sides, the ninth image left out
        pipeline = [(a.numpy(), b.numpy()) for a, b in bundle.train]
        features = [(a.numpy(), b.numpy()) for a, b in cached]
        assert len(pipeline) == len(features) == 2
        for (xa, ya), (xb, yb) in zip(pipeline, features):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert int(tf.data.experimental.cardinality(cached)) == 2


CACHEABLE = [(["conv1", "conv2"], "conv2"), (["conv1", "conv2", "conv3", "conv4"], "conv4")]


def frozen_model(frozen):
    keras.utils.set_random_seed(0)
    model = target_model()
    rt.freeze_stages(model, frozen)
    return model


@pytest.mark.parametrize("frozen,stage", CACHEABLE)
def test_cached_features_are_what_the_frozen_prefix_computes_in_training(frozen, stage):
    # Each image's index is its label, so every cached row can be traced back to its image.
    x, index = images(10, seed=3), np.arange(10, dtype="float32")[:, None]
    model = frozen_model(frozen)
    cache = cache_features(model, stage, feature_dataset(x, index, 4, shuffle=False),
                           feature_dataset(x[:5], index[:5], 4, shuffle=False), batch_size=4, seed=1)
    assert cache.split.stages == frozen and (cache.num_train, cache.num_val) == (10, 5)
    # In a training step the uncached model runs the prefix with training=True; frozen layers
    # (BatchNorm included) then compute what they compute in inference.
    expected = keras.ops.convert_to_numpy(cache.split.prefix(x, training=True))
    for _ in range(2):  # two epochs, each a new order of all ten images
        seen = []
        for features, labels in cache.train.as_numpy_iterator():
            rows = labels[:, 0].astype(int)
            np.testing.assert_allclose(features, expected[rows], rtol=0, atol=1e-5)
            seen += rows.tolist()
        assert sorted(seen) == list(range(10))
    (val_features, val_labels), = cache.val.as_numpy_iterator()
    np.testing.assert_array_equal(val_labels[:, 0], np.arange(5))
    np.testing.assert_allclose(val_features, expected[:5], rtol=0, atol=1e-5)


def _first_step(net, batch, model):
    """Gradients of the loss on ``batch`` and the weights after one SGD step, both as fit computes them."""
    import tensorflow as tf

    from restransfer.training.optimizers import build_optimizer, stage_multipliers

    images_or_features, labels = batch

    @tf.function  # Keras trains in a graph; an eager tape of the whole model rounds differently
    def gradients():
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.losses.categorical_crossentropy(labels, net(images_or_features, training=True)))
        return tape.gradient(loss, net.trainable_variables)

    grads = {v.path: keras.ops.convert_to_numpy(g) for v, g in zip(net.trainable_variables, gradients())}
    optimizer = build_optimizer("sgd", 0.05, weight_decay=1e-3,
                                lr_multipliers=stage_multipliers(model, {"conv4": 0.5}))
    net.compile(optimizer=optimizer, loss="categorical_crossentropy", jit_compile=False)
    loss = net.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False).history["loss"]
    return grads, {v.path: np.array(v) for v in model.weights}, loss


@pytest.mark.parametrize("frozen,stage", CACHEABLE)
def test_one_cached_training_step_equals_the_uncached_step_and_saves_the_same_model(tmp_path, frozen, stage):
    """One step is where the two paths must agree on any CPU: the same gradients, the same update.

    Many steps are not compared here: the two graphs round differently, and over steps those
    differences grow by amounts that depend on the CPU (`restransfer bench transfer` compares
    whole cached and uncached runs).
    """
    from restransfer.recipe.engine import save_inference_model

    x, y = images(12, seed=3), np.eye(3, dtype="float32")[np.arange(12) % 3]
    results = {}
    for cached in (False, True):
        model = frozen_model(frozen)
        initial = {v.path: np.array(v) for v in model.weights}
        if cached:
            cache = cache_features(model, stage, feature_dataset(x, y, 8, shuffle=False), batch_size=8, seed=1)
            net, train = cache.split.suffix, cache.train
        else:
            net, train = model, feature_dataset(x, y, 8, shuffle=True, seed=1)
        batch = next(iter(train))
        grads, weights, loss = _first_step(net, batch, model)
        save_inference_model(model, tmp_path / f"{cached}.keras")
        results[cached] = grads, weights, loss, batch[1].numpy()
    (plain_grads, plain, plain_loss, plain_labels), (grads, fast, loss, labels) = results[False], results[True]
    np.testing.assert_array_equal(labels, plain_labels)  # the same first batch
    assert sorted(grads) == sorted(plain_grads) and grads
    assert all(layer_stage(path.split("/")[0]) not in frozen for path in grads)
    for path, value in plain_grads.items():
        # Rounding differences of the two graphs are ~1e-7 of a gradient; another batch, or
        # a prefix that ran BatchNorm on batch statistics, differs by percents.
        np.testing.assert_allclose(grads[path], value, rtol=1e-4, atol=1e-6 * np.abs(value).max(), err_msg=path)
    np.testing.assert_allclose(loss, plain_loss, rtol=1e-6)
    assert plain.keys() == fast.keys() == initial.keys()
    for path, value in plain.items():
        if layer_stage(path.split("/")[0]) in frozen:
            np.testing.assert_array_equal(fast[path], initial[path], err_msg=path)
        np.testing.assert_allclose(fast[path], value, rtol=1e-5, atol=1e-6, err_msg=path)
    assert all(not np.array_equal(plain[path], initial[path]) for path in plain_grads)  # every trainable moved
    # The saved model is the whole network, the same file either way ...
    files = [zipfile.ZipFile(tmp_path / f"{cached}.keras") for cached in (False, True)]
    assert sorted(files[0].namelist()) == sorted(files[1].namelist())
    configs = [json.loads(f.read("config.json")) for f in files]
    assert configs[0] == configs[1] and not configs[0]["compile_config"]  # no optimizer saved
    for cached in (False, True):  # ... and it holds exactly the weights the step trained, every one
        reloaded = keras.saving.load_model(tmp_path / f"{cached}.keras")
        assert len(reloaded.weights) == len(results[cached][1])
        for variable in reloaded.weights:
            np.testing.assert_array_equal(np.array(variable), results[cached][1][variable.path], err_msg=variable.path)


def test_compute_features_keeps_the_order_and_labels():
    model = target_model()
    split = split_model(model, "conv1")
    x, y = images(7, seed=4), np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0]]
    features, labels = compute_features(split.prefix, feature_dataset(x, y, 3, shuffle=False))
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_allclose(features, keras.ops.convert_to_numpy(split.prefix(x, training=False)), atol=1e-5)


def test_a_small_last_batch_is_left_out_like_the_pipeline_does():
    x, y = np.arange(9, dtype="float32")[:, None], np.zeros((9, 1), "float32")
    ds = feature_dataset(x, y, 4, shuffle=True, seed=0, drop_small_last=True)  # 4 + 4, the 1 left over dropped
    epochs = [[b.numpy().ravel().tolist() for b, _ in ds] for _ in range(4)]
    assert all([len(batch) for batch in epoch] == [4, 4] for epoch in epochs)
    assert len({tuple(sorted(sum(epoch, []))) for epoch in epochs}) > 1  # other images left out each epoch
    assert [len(b) for b, _ in feature_dataset(x, y, 4, shuffle=False)] == [4, 4, 1]
    assert [len(b) for b, _ in feature_dataset(x[:6], y[:6], 4, shuffle=False, drop_small_last=True)] == [4, 2]
    assert [len(b) for b, _ in feature_dataset(x[:3], y[:3], 4, shuffle=False, drop_small_last=True)] == [3]


def test_decision_caches_only_what_is_exact_and_fits():
    model = target_model()
    head_only = ["conv1", "conv2", "conv3", "conv4"]
    rt.freeze_stages(model, head_only)
    assert cache_decision(model, head_only)[0] == "conv4"
    assert cache_decision(model, head_only, mode=False) == (None, "off (feature_cache: false)")
    assert cache_decision(model, []) == (None, "off: the phase freezes no leading stage")
    stage, why = cache_decision(model, head_only, augmented=True)
    assert stage is None and "data.augment changes the images" in why
    with pytest.raises(ConfigError, match="feature_cache: true, but .*data.augment"):
        cache_decision(model, head_only, mode=True, augmented=True)
    # 1,000 images x 64 float32 = 250 KiB: more than a 100 KiB budget, unless forced.
    stage, why = cache_decision(model, head_only, num_images=1000, budget_bytes=100 * 2**10)
    assert stage is None and "take 0.2 MiB, more than the memory budget of 0.1 MiB" in why
    assert cache_decision(model, head_only, mode=True, num_images=1000, budget_bytes=100 * 2**10)[0] == "conv4"
    assert cache_decision(model, head_only, num_images=1000, budget_bytes=2**30)[0] == "conv4"
    assert recipe_blockers(["conv1"], drop_path_rate=0.1) == []  # the stem has no residual branch
    assert recipe_blockers(["conv1", "conv2"], drop_path_rate=0.1, multi_worker=True) == [
        "multi_worker training splits batches of images across processes",
        "model.drop_path_rate 0.1 drops residual branches of frozen stages at random"]
