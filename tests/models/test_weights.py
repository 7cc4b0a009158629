"""Weight import: outputs equal keras.applications and an independent NumPy forward pass.

Nothing is downloaded: the keras.applications .h5 files are written from randomised
``keras.applications.ResNet*`` models in the published layout, and the state dicts are
random tensors under torchvision's names and PyTorch layouts (OIHW).
"""

import hashlib
import warnings

import h5py
import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import restransfer as rt
from restransfer.errors import WeightsError
from restransfer.models.weights import imagenet, load_weights

SIZE = 64
TORCH_SIZE = 48
EPS_TORCH = 1e-5


# ---------------------------------------------------------------------------------------------
# Keras side: randomised keras.applications models written as legacy by-name .h5 files.


def randomize(model, seed):
    """Random weights with non-trivial BatchNorm statistics, scaled to keep activations finite."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if w.name == "kernel":
                values.append(rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape))
            elif w.name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, shape))
            else:  # bias, beta, moving_mean
                values.append(rng.normal(0, 0.1, shape))
        if values:
            layer.set_weights([v.astype("float32") for v in values])
    return model


def write_published_h5(model, path, skip=(), rename=None):
    """The layout of keras-applications' published files (Keras 2): ``name/kernel:0`` weight
    names, and the classifier called ``probs`` as in keras-applications' resnet_common.py."""
    rename = rename if rename is not None else {"predictions": "probs"}
    layers = [layer for layer in model.layers if layer.name not in skip]
    with h5py.File(path, "w") as f:
        names = [rename.get(layer.name, layer.name) for layer in layers]
        f.attrs["layer_names"] = [n.encode() for n in names]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer, name in zip(layers, names):
            group = f.create_group(name)
            weight_names = [f"{name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in weight_names]
            for weight_name, w in zip(weight_names, layer.weights):
                group.create_dataset(weight_name, data=keras.ops.convert_to_numpy(w))
    return path


def write_keras3_h5(model, path):
    """The same layout as written by Keras 3 (``conv1_conv/kernel`` names, no ``:0``)."""
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    return path


def images(seed=0, size=SIZE, n=2):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def outputs(model, x, layer=None):
    if layer is not None:
        model = keras.Model(model.inputs, model.get_layer(layer).output)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The structure of `inputs`")
        return keras.ops.convert_to_numpy(model(x, training=False))


def assert_close(ours, reference):
    scale = float(np.abs(reference).max())
    assert scale > 1e-3  # the comparison is not between two near-zero tensors
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * scale)


@pytest.fixture(scope="module")
def keras_resnet50(tmp_path_factory):
    """A randomised keras.applications ResNet50 (logits) and its .h5 files, with and without top."""
    folder = tmp_path_factory.mktemp("keras_h5")
    ref = randomize(keras.applications.ResNet50(
        weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None), seed=1)
    top = write_published_h5(ref, folder / "resnet50_top.h5")
    notop = write_published_h5(ref, folder / "resnet50_notop.h5", skip=("predictions", "avg_pool"))
    return ref, top, notop


def test_published_h5_matches_keras_applications_resnet50(keras_resnet50):
    ref, top, _ = keras_resnet50
    ours = rt.create_model("resnet50", weights=top, style="keras", input_shape=(SIZE, SIZE, 3),
                           classifier_activation=None)
    x = images()
    assert_close(outputs(ours, x), outputs(ref, x))


def test_h5_with_other_class_count_loads_backbone_and_leaves_fresh_head(keras_resnet50):
    ref, top, _ = keras_resnet50
    options = dict(style="keras", num_classes=5, input_shape=(SIZE, SIZE, 3))
    keras.utils.set_random_seed(7)
    with pytest.warns(UserWarning, match="1000 classes.*5 classes"):
        loaded = rt.create_model("resnet50", weights=str(top), **options)
    keras.utils.set_random_seed(7)
    fresh = rt.create_model("resnet50", **options)
    x = images(1)
    assert_close(outputs(loaded, x, "conv5_block3_out"), outputs(ref, x, "conv5_block3_out"))
    head, fresh_head = loaded.get_layer("predictions"), fresh.get_layer("predictions")
    assert head.kernel.shape == (2048, 5)
    for a, b in zip(head.get_weights(), fresh_head.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.output_shape == (None, 5)


@pytest.fixture
def keras_cache(tmp_path, monkeypatch):
    """An empty Keras cache ($KERAS_HOME) and no way to download: the ImageNet tests run offline."""
    import keras.src.backend.config as keras_config

    # Keras reads KERAS_HOME once, at import; get_file asks this private variable.
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(imagenet, "BASE_URL", (tmp_path / "no-network").as_uri() + "/")
    (tmp_path / "models").mkdir()
    return tmp_path / "models"


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_imagenet_uses_the_file_in_keras_cache_offline(keras_resnet50, keras_cache, monkeypatch):
    ref, _, notop = keras_resnet50
    cached = keras_cache / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached.write_bytes(notop.read_bytes())
    # Our file is not the published one, so it cannot have the published md5; get_file still
    # verifies the cached file against the hash in our table, pointed at this file's md5.
    # test_imagenet_table_is_keras_own checks the real table.
    monkeypatch.setitem(imagenet.IMAGENET_FILES, "resnet50", ("unused", md5(cached)))
    ours = rt.create_model("resnet50", weights="imagenet", include_top=False, pooling="avg",
                           input_shape=(SIZE, SIZE, 3))
    x = images(2)
    assert_close(outputs(ours, x), outputs(ref, x, "avg_pool"))


def test_imagenet_table_is_keras_own():
    from keras.src.applications import resnet

    assert imagenet.BASE_URL == resnet.BASE_WEIGHTS_PATH
    for name, hashes in imagenet.IMAGENET_FILES.items():
        assert hashes == resnet.WEIGHTS_HASHES[name]
    assert imagenet.file_name("resnet101", False) == "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_imagenet_refuses_a_cached_file_with_another_hash(keras_cache):
    (keras_cache / "resnet50_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"not the published file")
    with pytest.raises(WeightsError, match=r"resnet50_weights_tf_dim_ordering_tf_kernels\.h5.*copy it to"):
        imagenet.fetch("resnet50", include_top=True)


def test_imagenet_for_a_name_without_published_file(tv18):
    with pytest.raises(WeightsError, match=r"\['resnet101', 'resnet101v2', 'resnet152', .*'resnet50v2'\].*'resnet18'.*state dict"):
        load_weights(tv18, "imagenet", model_name="resnet18")


def test_imagenet_needs_keras_style():
    with pytest.raises(WeightsError, match="style='keras'"):
        rt.create_model("resnet50", weights="imagenet", style="torchvision", input_shape=(32, 32, 3))


def test_keras3_written_h5_into_our_model_with_dilation(keras_resnet50, tmp_path):
    # Keras 3's writer (no ":0", "predictions"); output_stride changes no weight shapes.
    ref, _, _ = keras_resnet50
    path = write_keras3_h5(ref, tmp_path / "k3.h5")
    ours = rt.create_model("resnet50", weights=path, style="keras", include_top=False,
                           input_shape=(SIZE, SIZE, 3), output_stride=16)
    np.testing.assert_array_equal(
        ours.get_layer("conv4_block6_3_conv").get_weights()[0],
        ref.get_layer("conv4_block6_3_conv").get_weights()[0],
    )


@pytest.mark.slow
def test_published_h5_matches_keras_applications_resnet101_and_152(tmp_path):
    for name, cls in (("resnet101", keras.applications.ResNet101), ("resnet152", keras.applications.ResNet152)):
        ref = randomize(cls(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3)), seed=3)
        path = write_published_h5(ref, tmp_path / f"{name}.h5")
        ours = rt.create_model(name, weights=path, style="keras", include_top=False, pooling="avg",
                               input_shape=(32, 32, 3))
        x = images(3, size=32)
        assert_close(outputs(ours, x), outputs(ref, x))


# ---------------------------------------------------------------------------------------------
# PyTorch side: torchvision state dicts and an independent NumPy forward pass.

# torchvision's definitions: block, blocks per stage, groups, width_per_group.
TORCHVISION = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64),
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), 32, 4),
    "resnet34": ("basic", (3, 4, 6, 3), 1, 64),
}


def torchvision_state_dict(name, seed, num_classes=1000):
    """Random tensors with torchvision's names, shapes and layouts (conv OIHW, linear (out, in))."""
    block, repeats, groups, width_per_group = TORCHVISION[name]
    rng = np.random.default_rng(seed)
    state = {}

    def conv(key, out, inp, k, g=1):
        fan_in = inp // g * k * k
        state[f"{key}.weight"] = rng.normal(0, np.sqrt(2.0 / fan_in), (out, inp // g, k, k)).astype("float32")

    def bn(key, c):
        state[f"{key}.weight"] = rng.uniform(0.5, 1.5, c).astype("float32")
        state[f"{key}.bias"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{key}.running_mean"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{key}.running_var"] = rng.uniform(0.5, 1.5, c).astype("float32")
        state[f"{key}.num_batches_tracked"] = np.array(100, dtype="int64")

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for s, (n, planes) in enumerate(zip(repeats, (64, 128, 256, 512)), start=1):
        for b in range(n):
            p = f"layer{s}.{b}"
            if block == "basic":
                out = planes
                conv(f"{p}.conv1", planes, inplanes, 3), bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
            else:
                width = int(planes * width_per_group / 64) * groups
                out = planes * 4
                conv(f"{p}.conv1", width, inplanes, 1), bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3, groups), bn(f"{p}.bn2", width)
                conv(f"{p}.conv3", out, width, 1), bn(f"{p}.bn3", out)
            if b == 0 and (s > 1 or inplanes != out):
                conv(f"{p}.downsample.0", out, inplanes, 1), bn(f"{p}.downsample.1", out)
            inplanes = out
    state["fc.weight"] = rng.normal(0, 1 / np.sqrt(inplanes), (num_classes, inplanes)).astype("float32")
    state["fc.bias"] = rng.normal(0, 0.1, num_classes).astype("float32")
    return state


def np_conv(x, weight, stride=1, padding=0, groups=1):
    """PyTorch's Conv2d on NHWC input with an OIHW kernel: zero padding, im2col, grouped matmul."""
    out_channels, group_in, kh, kw = weight.shape
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    n, h, w = patches.shape[:3]
    patches = patches.reshape(n * h * w, groups, group_in * kh * kw).transpose(1, 0, 2)
    kernel = weight.reshape(groups, out_channels // groups, group_in * kh * kw).transpose(0, 2, 1)
    y = np.matmul(patches, kernel)  # (groups, n*h*w, out / groups)
    return y.transpose(1, 0, 2).reshape(n, h, w, out_channels)


def np_bn(x, state, key):
    scale = state[f"{key}.weight"] / np.sqrt(state[f"{key}.running_var"] + EPS_TORCH)
    return (x - state[f"{key}.running_mean"]) * scale + state[f"{key}.bias"]


def np_maxpool(x):
    x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    return np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2].max(axis=(-2, -1))


def torchvision_forward(name, state, x):
    """torchvision's ResNet.forward in float64 NumPy, from the state dict alone: logits."""
    block, repeats, groups, _ = TORCHVISION[name]
    state = {k: v.astype("float64") for k, v in state.items()}
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    x = relu(np_bn(np_conv(x.astype("float64"), state["conv1.weight"], 2, 3), state, "bn1"))
    x = np_maxpool(x)
    for s, n in enumerate(repeats, start=1):
        for b in range(n):
            p, stride = f"layer{s}.{b}", 2 if (s > 1 and b == 0) else 1
            identity = x
            if f"{p}.downsample.0.weight" in state:
                identity = np_bn(np_conv(x, state[f"{p}.downsample.0.weight"], stride), state, f"{p}.downsample.1")
            if block == "basic":
                y = relu(np_bn(np_conv(x, state[f"{p}.conv1.weight"], stride, 1), state, f"{p}.bn1"))
                y = np_bn(np_conv(y, state[f"{p}.conv2.weight"], 1, 1), state, f"{p}.bn2")
            else:  # v1.5: the stride sits on the (grouped) 3x3
                y = relu(np_bn(np_conv(x, state[f"{p}.conv1.weight"]), state, f"{p}.bn1"))
                y = relu(np_bn(np_conv(y, state[f"{p}.conv2.weight"], stride, 1, groups), state, f"{p}.bn2"))
                y = np_bn(np_conv(y, state[f"{p}.conv3.weight"]), state, f"{p}.bn3")
            x = relu(y + identity)
    return x.mean(axis=(1, 2)) @ state["fc.weight"].T + state["fc.bias"]


def test_numpy_reference_conv_is_a_correlation():
    # The reference's own sanity check against a hand-computed grouped correlation.
    x = np.arange(2 * 4 * 4 * 4, dtype="float64").reshape(2, 4, 4, 4)
    w = np.random.default_rng(0).normal(size=(6, 2, 3, 3))
    y = np_conv(x, w, stride=2, padding=1, groups=2)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patch = xp[1, 2:5, 0:3, 2:4]  # output (1, row 1, col 0), group 1 = channels 2:4
    expected = sum(patch[i, j, c] * w[4, c, i, j] for i in range(3) for j in range(3) for c in range(2))
    assert y.shape == (2, 2, 2, 6)
    np.testing.assert_allclose(y[1, 1, 0, 4], expected)


def test_numpy_reference_equals_torch_functional_forward():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    state = torchvision_state_dict("resnext50_32x4d", seed=12)
    t = {k: torch.from_numpy(v).double() for k, v in state.items()}
    x = np.random.default_rng(9).normal(size=(1, 40, 40, 3))

    def bn(y, key):
        return F.batch_norm(y, t[f"{key}.running_mean"], t[f"{key}.running_var"], t[f"{key}.weight"],
                            t[f"{key}.bias"], training=False, eps=EPS_TORCH)

    y = F.relu(bn(F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), t["conv1.weight"], stride=2, padding=3), "bn1"))
    y = F.max_pool2d(y, 3, 2, 1)
    for s, n in enumerate((3, 4, 6, 3), start=1):
        for b in range(n):
            p, stride = f"layer{s}.{b}", 2 if (s > 1 and b == 0) else 1
            identity = y
            if f"{p}.downsample.0.weight" in t:
                identity = bn(F.conv2d(y, t[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            z = F.relu(bn(F.conv2d(y, t[f"{p}.conv1.weight"]), f"{p}.bn1"))
            z = F.relu(bn(F.conv2d(z, t[f"{p}.conv2.weight"], stride=stride, padding=1, groups=32), f"{p}.bn2"))
            y = F.relu(bn(F.conv2d(z, t[f"{p}.conv3.weight"]), f"{p}.bn3") + identity)
    logits = F.linear(y.mean(dim=(2, 3)), t["fc.weight"], t["fc.bias"]).numpy()
    np.testing.assert_allclose(torchvision_forward("resnext50_32x4d", state, x), logits, rtol=1e-9, atol=1e-9)


def test_torch_names_round_trip():
    from restransfer.models.weights.torch_names import keras_name, strip_prefix, torch_name

    for key in torchvision_state_dict("resnet50", seed=0):
        if not key.endswith("num_batches_tracked"):
            assert torch_name(keras_name(key)) == key
    assert keras_name("layer1.0.downsample.0.weight") == "conv2_block1_0_conv/kernel"
    assert keras_name("layer3.5.bn2.running_var") == "conv4_block6_2_bn/moving_variance"
    assert keras_name("fc.weight") == "predictions/kernel"
    assert keras_name("layer1.0.se.fc1.weight") == "conv2_block1_se_reduce/kernel"
    assert keras_name("layer1.0.downsample.1.weight", avg_down=True) == "conv2_block1_0_conv/kernel"
    assert keras_name("layer1.0.downsample.0.weight", avg_down=True) is None  # the pool holds nothing
    assert keras_name("conv1.4.running_var") == "conv1_2_bn/moving_variance"
    assert strip_prefix("module.model.conv1.weight") == "conv1.weight"


def save_state(state, path):
    if path.suffix == ".npz":
        np.savez(path, **state)
    else:
        save_file(state, str(path))
    return path


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_state_dict_matches_numpy_torchvision_forward(name, tmp_path):
    x = np.random.default_rng(5).normal(size=(2, TORCH_SIZE, TORCH_SIZE, 3)).astype("float32")
    first = torchvision_state_dict(name, seed=10)
    model = rt.create_model(name, weights=save_state(first, tmp_path / "w.safetensors"),
                            input_shape=(TORCH_SIZE, TORCH_SIZE, 3), classifier_activation=None)
    assert_close(outputs(model, x), torchvision_forward(name, first, x))
    # .npz, other values, and keys as saved from a DataParallel wrapper.
    second = {f"module.{k}": v for k, v in torchvision_state_dict(name, seed=11).items()}
    load_weights(model, save_state(second, tmp_path / "w.npz"))
    assert_close(outputs(model, x), torchvision_forward(name, torchvision_state_dict(name, seed=11), x))


@pytest.fixture(scope="module")
def resnet18_state():
    return torchvision_state_dict("resnet18", seed=20)


def small_resnet18(**options):
    return rt.create_model("resnet18", input_shape=(32, 32, 3), **options)


@pytest.fixture(scope="module")
def tv18():
    """Shared by the error tests: a failed load changes nothing (test_failed_load_...)."""
    return small_resnet18()


@pytest.fixture(scope="module")
def keras18():
    return small_resnet18(style="keras")


def test_pth_state_dict_via_torch(resnet18_state, tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "resnet18.pth"
    tensors = {k: torch.from_numpy(v) for k, v in resnet18_state.items()}
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in tensors.items()}}, path)
    model = small_resnet18(weights=path, classifier_activation=None)
    x = np.random.default_rng(6).normal(size=(2, 32, 32, 3)).astype("float32")
    assert_close(outputs(model, x), torchvision_forward("resnet18", resnet18_state, x))


def test_pth_without_torch_says_what_to_do(tmp_path):
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed")
    except ImportError:
        pass
    path = tmp_path / "resnet18.pth"
    path.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(WeightsError, match=r"restransfer\[torch\].*\.safetensors"):
        small_resnet18(weights=path)


def test_state_dict_head_with_other_classes_or_no_top_is_skipped(resnet18_state, tmp_path):
    path = save_state(resnet18_state, tmp_path / "w.safetensors")
    with pytest.warns(UserWarning, match="1000 classes.*3 classes"):
        model = small_resnet18(weights=path, num_classes=3)
    np.testing.assert_array_equal(
        model.get_layer("conv5_block2_2_conv").get_weights()[0],
        resnet18_state["layer4.1.conv2.weight"].transpose(2, 3, 1, 0),
    )
    with pytest.warns(UserWarning, match="include_top=False"):
        small_resnet18(weights=path, include_top=False)


def test_styles_do_not_mix(resnet18_state, tv18, keras18, tmp_path):
    with pytest.raises(WeightsError, match="holds torchvision-style weights.*style='torchvision'"):
        load_weights(keras18, save_state(resnet18_state, tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError, match="holds keras-style weights.*style='keras'"):
        load_weights(tv18, write_published_h5(keras18, tmp_path / "k.h5"))


def test_missing_tensor_is_named(resnet18_state, tv18, tmp_path):
    state = {k: v for k, v in resnet18_state.items() if k != "layer2.0.bn1.running_var"}
    expected = r"lacks: 'layer2\.0\.bn1\.running_var' \(-> conv3_block1_1_bn/moving_variance\)"
    with pytest.raises(WeightsError, match=expected):
        load_weights(tv18, save_state(state, tmp_path / "w.npz"))


def test_extra_tensor_is_named(resnet18_state, tv18, tmp_path):
    state = {**resnet18_state, "layer4.2.conv1.weight": np.zeros((512, 512, 3, 3), "float32")}
    with pytest.raises(WeightsError, match=r"cannot use: 'layer4\.2\.conv1\.weight' \(-> conv5_block3_1_conv/kernel\)"):
        load_weights(tv18, save_state(state, tmp_path / "w.npz"))
    # A name with no Keras counterpart (an SE-ResNet's squeeze-excite) is an error, not a head.
    state = {**resnet18_state, "layer1.0.se.fc1.weight": np.zeros((4, 64, 1, 1), "float32")}
    with pytest.raises(WeightsError, match=r"cannot use: 'layer1\.0\.se\.fc1\.weight'"):
        load_weights(tv18, save_state(state, tmp_path / "se.npz"))


def test_wrong_depth_is_refused(tv18, tmp_path):
    state = torchvision_state_dict("resnet34", seed=0)
    with pytest.raises(WeightsError, match="cannot use: 'layer1.2.conv1.weight'"):
        load_weights(tv18, save_state(state, tmp_path / "w.npz"))


def test_shape_mismatch_names_tensor_and_shapes(resnet18_state, tv18, tmp_path):
    state = dict(resnet18_state)
    state["layer2.0.conv1.weight"] = np.zeros((128, 64, 5, 5), "float32")
    with pytest.raises(WeightsError, match=r"'layer2\.0\.conv1\.weight'.*\(5, 5, 64, 128\).*expects \(3, 3, 64, 128\)"):
        load_weights(tv18, save_state(state, tmp_path / "w.npz"))


def test_failed_load_leaves_the_model_untouched(resnet18_state, tv18, tmp_path):
    model = tv18
    before = [w.copy() for w in model.get_weights()]
    state = dict(resnet18_state)
    state["fc.bias"] = state["fc.bias"][:10]  # head mismatch alone is a warning, so break the backbone too
    state.pop("layer4.1.bn2.bias")
    with pytest.raises(WeightsError):
        load_weights(model, save_state(state, tmp_path / "w.npz"))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_missing_file_and_unknown_format(tv18, tmp_path):
    model = tv18
    with pytest.raises(WeightsError, match="nope.safetensors do not exist"):
        load_weights(model, tmp_path / "nope.safetensors")
    odd = tmp_path / "weights.ckpt"
    odd.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"Unknown weights format '\.ckpt'.*\.safetensors"):
        load_weights(model, odd)
    with pytest.raises(WeightsError, match="not a run folder"):
        load_weights(model, tmp_path)


def test_unreadable_files_give_weights_errors(tv18, tmp_path):
    model = tv18
    for name in ("broken.safetensors", "broken.npz", "broken.h5"):
        (tmp_path / name).write_bytes(b"garbage")
        with pytest.raises(WeightsError, match="broken"):
            load_weights(model, tmp_path / name)


def test_state_dict_for_cifar_resnet_or_plain_twin_is_refused(resnet18_state, tv18, tmp_path):
    path = save_state(resnet18_state, tmp_path / "w.npz")
    for name in ("cifar_resnet20", "plain_resnet18"):
        with pytest.raises(WeightsError, match=f"'{name}' has no torchvision/timm counterpart.*restransfer checkpoint"):
            load_weights(tv18, path, model_name=name)


# ---------------------------------------------------------------------------------------------
# Our own checkpoints.


def test_own_keras_file_and_run_folder_copy_by_name(tmp_path):
    source = randomize(rt.create_model("cifar_resnet20", num_classes=10), seed=4)
    run = tmp_path / "run"
    run.mkdir()
    source.save(run / "model.keras")
    x = images(7, size=32)
    for weights in (run / "model.keras", run):
        model = rt.create_model("cifar_resnet20", num_classes=10, weights=weights)
        assert_close(outputs(model, x), outputs(source, x))
    with pytest.warns(UserWarning, match="10 classes.*4 classes"):
        rt.create_model("cifar_resnet20", num_classes=4, weights=run)


def test_own_weights_h5_round_trip_and_mismatch(tv18, keras18, tmp_path):
    source = randomize(small_resnet18(num_classes=4), seed=8)
    path = tmp_path / "best.weights.h5"
    source.save_weights(path)
    model = small_resnet18(num_classes=4, weights=path)
    x = images(8, size=32)
    assert_close(outputs(model, x), outputs(source, x))
    with pytest.raises(WeightsError, match="loads only into the architecture it was saved from") as caught:
        load_weights(tv18, path)  # 1000 classes
    # Keras' example error follows its "Example error message for object <...>:" line.
    assert "built=True>: The shape of the target variable" in str(caught.value)
    assert ":  A .weights.h5" not in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(WeightsError, match="style='torchvision'"):
        load_weights(keras18, path)
