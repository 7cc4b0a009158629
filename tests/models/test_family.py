"""ResNet V2, ResNet-D and SE-ResNe(X)t against the libraries that publish their weights.

keras.applications builds the V2 reference, timm (with PyTorch) the D and SE references, all
with random weights and randomised BatchNorm statistics; outputs must agree to float32
rounding (<= 1e-5 relative to the largest logit) on random inputs and on scikit-learn's two
photos. Without timm (the keras + jax environment) its tests skip.
"""

import warnings

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file
from test_weights import md5, randomize, write_published_h5

import restransfer as rt
from restransfer.errors import ConfigError, WeightsError
from restransfer.models.stages import layer_stage
from restransfer.models.weights import imagenet, load_weights

RTOL = 1e-5
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], "float32") * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], "float32") * 255

# Trainable parameters with the 1000-class head, as timm counts them (model.parameters()).
TIMM_PUBLISHED = {
    "resnet18d": 11_708_744,
    "resnet34d": 21_816_904,
    "resnet50d": 25_576_264,
    "resnet101d": 44_568_392,
    "resnet152d": 60_212_040,
    "resnext50d_32x4d": 25_048_136,
    "seresnet50": 28_088_024,
    "seresnext50_32x4d": 27_559_896,
    "seresnext101_32x4d": 48_955_416,
}
# keras.applications' count_params() (BatchNorm statistics included).
KERAS_V2 = {"resnet50v2": 25_613_800, "resnet101v2": 44_675_560, "resnet152v2": 60_380_648}


def relative_error(ours, reference):
    scale = float(np.abs(reference).max())
    assert scale > 1e-3  # not a comparison of two near-zero tensors
    return float(np.abs(np.asarray(ours, "float64") - reference).max()) / scale


def run(model, x):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The structure of `inputs`")
        return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.fixture(scope="module")
def photos():
    """scikit-learn's two photos (china.jpg, flower.jpg), resized to 48x48, RGB 0-255."""
    # The keras + jax environment has neither: its model tests run on random inputs only.
    Image = pytest.importorskip("PIL.Image")
    load_sample_images = pytest.importorskip("sklearn.datasets").load_sample_images

    images = load_sample_images().images
    return np.stack([np.asarray(Image.fromarray(i).resize((48, 48), Image.BILINEAR)) for i in images]).astype("float32")


def random_images(seed, size, n=2):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


# ---------------------------------------------------------------------------------------------
# Parameter counts and layer names.


@pytest.mark.parametrize("name,expected", sorted(TIMM_PUBLISHED.items()))
def test_d_and_se_parameter_counts_equal_timm(name, expected):
    model = rt.create_model(name)
    assert int(sum(np.prod(w.shape) for w in model.trainable_weights)) == expected


@pytest.mark.parametrize("name", sorted(KERAS_V2))
def test_v2_has_keras_applications_weighted_layers(name):
    ours = rt.create_model(name)
    theirs = getattr(keras.applications, name.replace("resnet", "ResNet").replace("v2", "V2"))(weights=None)
    weighted = lambda m: {layer.name: [tuple(w.shape) for w in layer.weights] for layer in m.layers if layer.weights}  # noqa: E731
    assert weighted(ours) == weighted(theirs)
    assert ours.count_params() == theirs.count_params() == KERAS_V2[name]


def test_v2_stages_freeze_like_v1():
    model = rt.create_model("resnet50v2", input_shape=(32, 32, 3), num_classes=3)
    assert rt.stage_names(model) == ["conv1", "conv2", "conv3", "conv4", "conv5", "head"]
    assert layer_stage("post_bn") == layer_stage("post_relu") == "conv5"
    rt.freeze_stages(model, ["conv5"])
    assert not model.get_layer("post_bn").trainable and model.get_layer("predictions").trainable
    # A recipe's freeze values work here too; a lone name is a stage, not its letters.
    rt.freeze_stages(model, "all_but_head")
    assert not model.get_layer("conv1_conv").trainable and model.get_layer("predictions").trainable
    rt.freeze_stages(model, "conv1")
    assert not model.get_layer("conv1_conv").trainable and model.get_layer("post_bn").trainable
    with pytest.raises(ConfigError, match=r"'conv7' is not a stage of this model; allowed: none, all_but_head"):
        rt.freeze_stages(model, "conv7")
    new = rt.replace_head(model, 4)
    assert new.get_layer("post_relu") is model.get_layer("post_relu")  # the head attaches after post_relu
    # keras.applications: the stride sits in each stage's last block, conv5 has none.
    assert model.get_layer("conv2_block3_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert model.get_layer("conv5_block3_2_conv").strides == (1, 1)


def test_styles_and_options_the_variants_lack():
    with pytest.raises(ConfigError, match=r"This model exists in style 'torchvision' only"):
        rt.create_model("resnet50d", style="keras")
    with pytest.raises(ConfigError, match=r"This model exists in style 'keras' only"):
        rt.create_model("resnet50v2", style="torchvision")
    with pytest.raises(ConfigError, match="output_stride 8 or 16 needs the stride in the first block"):
        rt.create_model("resnet50v2", output_stride=16)
    with pytest.raises(ConfigError, match="V2 branches end in a convolution"):
        rt.create_model("resnet50v2", zero_init_residual=True)
    with pytest.raises(WeightsError, match="not for 'resnet50d'"):
        rt.create_model("resnet50d", weights="imagenet")
    v2 = rt.create_model("resnet50v2", input_shape=(32, 32, 3), preprocessing="auto")
    assert v2.get_layer("preprocess").mode == "tf"  # keras.applications.resnet_v2.preprocess_input


# ---------------------------------------------------------------------------------------------
# ResNet V2 against keras.applications.


@pytest.fixture(scope="module")
def keras_v2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v2")
    ref = randomize(keras.applications.ResNet50V2(weights=None, input_shape=(48, 48, 3),
                                                  classifier_activation=None), seed=21)
    top = write_published_h5(ref, folder / "resnet50v2_top.h5")
    notop = write_published_h5(ref, folder / "resnet50v2_notop.h5", skip=("predictions", "avg_pool"))
    return ref, top, notop


def test_v2_h5_loads_bit_exact_and_matches_keras_applications(keras_v2, photos):
    ref, top, _ = keras_v2
    ours = rt.create_model("resnet50v2", weights=top, input_shape=(48, 48, 3), classifier_activation=None)
    for layer in ref.layers:
        for a, b in zip(layer.get_weights(), ours.get_layer(layer.name).get_weights() if layer.weights else []):
            assert np.array_equal(a, b), layer.name
    for x in (random_images(3, 48) / 127.5 - 1, photos / 127.5 - 1):
        assert relative_error(run(ours, x), run(ref, x)) <= RTOL


def test_v2_imagenet_notop_from_keras_cache(keras_v2, tmp_path, monkeypatch, photos):
    import keras.src.backend.config as keras_config

    ref, _, notop = keras_v2
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(imagenet, "BASE_URL", (tmp_path / "no-network").as_uri() + "/")
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / imagenet.file_name("resnet50v2", include_top=False)
    cached.write_bytes(notop.read_bytes())
    monkeypatch.setitem(imagenet.IMAGENET_FILES, "resnet50v2", ("unused", md5(cached)))
    ours = rt.create_model("resnet50v2", weights="imagenet", include_top=False, pooling="avg",
                           input_shape=(48, 48, 3), preprocessing="auto")
    features = keras.Model(ref.inputs, ref.get_layer("avg_pool").output)
    assert relative_error(run(ours, photos), run(features, photos / 127.5 - 1)) <= RTOL


def test_v2_file_into_v1_model_says_what_it_is(keras_v2):
    _, top, _ = keras_v2
    model = rt.create_model("resnet50", style="keras", input_shape=(32, 32, 3))
    with pytest.raises(WeightsError, match=r"pre-activation \(V2\) blocks \('conv2_block1_preact_bn'\).*"
                                           r"create_model\('resnet50v2'"):
        load_weights(model, top)


@pytest.mark.slow
def test_v2_101_and_152_match_keras_applications(tmp_path):
    for name, cls in (("resnet101v2", keras.applications.ResNet101V2), ("resnet152v2", keras.applications.ResNet152V2)):
        ref = randomize(cls(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3)), seed=5)
        path = write_published_h5(ref, tmp_path / f"{name}.h5")
        ours = rt.create_model(name, weights=path, include_top=False, pooling="avg", input_shape=(32, 32, 3))
        x = random_images(6, 32) / 127.5 - 1
        assert relative_error(run(ours, x), run(ref, x)) <= RTOL


# ---------------------------------------------------------------------------------------------
# ResNet-D and SE against timm.


def randomize_timm(model, seed):
    """Random weights and BatchNorm statistics for a timm model, in eval mode.

    SE weights are drawn at 0.3x the He scale: at full scale the gates' inputs reach +-30 and
    float32 itself is off by 1e-4 (timm in float32 against timm in float64), which would hide
    any real difference.
    """
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                scale = 0.3 if ".se." in name else 1.0
                p.copy_(torch.randn(p.shape, generator=g) * scale * (2.0 / p[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model.eval()


def timm_model(name, seed=0, **kwargs):
    timm = pytest.importorskip("timm")
    return randomize_timm(timm.create_model(name, pretrained=False, **kwargs), seed)


def timm_logits(model, x):
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()


def save_timm(model, path):
    save_file({k: v.detach().contiguous().numpy() for k, v in model.state_dict().items()}, str(path))
    return path


def normalise(images):
    return (images - IMAGENET_MEAN) / IMAGENET_STD


@pytest.mark.parametrize("name", ["resnet18d", "resnet50d", "resnext50d_32x4d", "seresnet50", "seresnext50_32x4d"])
def test_state_dict_matches_timm(name, tmp_path, photos):
    ref = timm_model(name)
    # 48 px: stage 5 sees 3x3 maps, so the ceil-mode average pool of the D shortcut is exercised.
    ours = rt.create_model(name, weights=save_timm(ref, tmp_path / f"{name}.safetensors"),
                           input_shape=(48, 48, 3), classifier_activation=None)
    for x in (normalise(random_images(4, 48)), normalise(photos)):
        assert relative_error(run(ours, x), timm_logits(ref, x)) <= RTOL


def test_resnet_d_dilated_shortcut_matches_timm(tmp_path):
    ref = timm_model("resnet50d", seed=1, output_stride=8)
    ours = rt.create_model("resnet50d", weights=save_timm(ref, tmp_path / "d.safetensors"),
                           input_shape=(40, 40, 3), output_stride=8, classifier_activation=None)
    x = normalise(random_images(5, 40))
    assert relative_error(run(ours, x), timm_logits(ref, x)) <= RTOL


@pytest.mark.parametrize("source,target,evidence,suggestion", [
    ("resnet50d", "resnet50", r"a deep 3x3 stem and average-pool shortcuts \('conv1\.0\.weight'", "resnet50d"),
    ("seresnext50_32x4d", "resnext50_32x4d", r"squeeze-excitation \('layer1\.0\.se\.fc1\.bias'", "seresnext50_32x4d"),
])
def test_near_miss_state_dicts_name_the_model_to_use(source, target, evidence, suggestion, tmp_path):
    path = save_timm(timm_model(source), tmp_path / f"{source}.safetensors")
    model = rt.create_model(target, input_shape=(32, 32, 3))
    with pytest.raises(WeightsError, match=evidence + r".*" + rf"create_model\('{suggestion}'"):
        load_weights(model, path)


# ---------------------------------------------------------------------------------------------
# timm / Hugging Face hub folders.


def hub_folder(name, folder, **kwargs):
    save_for_hf = pytest.importorskip("timm.models._hub").save_for_hf

    model = timm_model(name, **kwargs)
    save_for_hf(model, folder, safe_serialization=True)
    return model, folder


def test_hub_folder_loads_and_matches_timm(tmp_path, photos):
    ref, folder = hub_folder("resnet18d", tmp_path / "resnet18d.ra2_in1k")
    ours = rt.create_model("resnet18d", weights=folder, input_shape=(48, 48, 3), classifier_activation=None)
    assert relative_error(run(ours, normalise(photos)), timm_logits(ref, normalise(photos))) <= RTOL


@pytest.mark.parametrize("timm_name,ours", [("resnetaa50", "resnet50"), ("resnetblur50", "resnet50"),
                                            ("resnetblur18", "resnet18")])
def test_anti_aliased_hub_folders_are_refused_by_name(timm_name, ours, tmp_path):
    _, folder = hub_folder(timm_name, tmp_path / timm_name)
    with pytest.raises(WeightsError, match=rf"timm's '{timm_name}': anti-aliased downsampling.*exactly the "
                                           rf"names and shapes of {ours}'s"):
        rt.create_model(ours, weights=folder, input_shape=(32, 32, 3))


def test_hub_folder_of_another_model_names_it(tmp_path):
    _, folder = hub_folder("resnet18d", tmp_path / "r18d")
    with pytest.raises(WeightsError, match=r"holds timm's 'resnet18d', not 'resnet18'.*create_model\('resnet18d'"):
        rt.create_model("resnet18", weights=folder, input_shape=(32, 32, 3))


# ---------------------------------------------------------------------------------------------
# KerasHub preset folders.


def keras_hub_preset(folder, block_type, blocks, stem=([64], [7]), pre_activation=False, seed=0):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=stem[0], input_conv_kernel_sizes=stem[1], stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=blocks, stackwise_num_strides=[1, 2, 2, 2], block_type=block_type,
        use_pre_activation=pre_activation, image_shape=(None, None, 3))
    randomize(backbone, seed)
    backbone.save_to_preset(str(folder))
    return backbone


@pytest.mark.parametrize("name,block_type,blocks,stem", [
    ("resnet18", "basic_block", [2, 2, 2, 2], ([64], [7])),
    ("resnet50d", "bottleneck_block_vd", [3, 4, 6, 3], ([32, 32, 64], [3, 3, 3])),
])
def test_keras_hub_preset_matches_its_backbone(name, block_type, blocks, stem, tmp_path, photos):
    backbone = keras_hub_preset(tmp_path / name, block_type, blocks, stem)
    with pytest.warns(UserWarning, match="no classifier head"):
        ours = rt.create_model(name, weights=tmp_path / name, input_shape=(48, 48, 3), classifier_activation=None)
    features = keras.Model(ours.inputs, ours.get_layer(rt.stage_names(ours)[-2] + "_block" + str(blocks[-1]) + "_out").output)
    for x in (normalise(random_images(8, 48)), normalise(photos)):
        assert relative_error(run(features, x), run(backbone, x)) <= RTOL


@pytest.mark.parametrize("block_type,pre_activation,message", [
    ("basic_block", True, r"KerasHub ResNetV2 preset.*timm's ResNetV2 layout.*no model for it"),
    ("basic_block_vd", False, r"first block projects the shortcut.*no model for it"),
])
def test_keras_hub_presets_without_counterpart_are_refused(block_type, pre_activation, message, tmp_path):
    from restransfer.models.weights import weights_source

    stem = ([32, 32, 64], [3, 3, 3]) if block_type.endswith("_vd") else ([64], [7])
    keras_hub_preset(tmp_path / "p", block_type, [2, 2, 2, 2], stem, pre_activation)
    with pytest.raises(WeightsError, match=message):
        weights_source(tmp_path / "p")


# ---------------------------------------------------------------------------------------------
# weights_source: what a weights value is, without Keras.


def write_json(path, value):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def test_weights_source_classifies_every_kind(tmp_path):
    from restransfer.models.weights import weights_source

    assert weights_source(None).kind == weights_source("none").kind == "none"
    assert weights_source("imagenet", model_name="resnet152v2").kind == "imagenet"
    with pytest.raises(WeightsError, match="not for 'resnet18d'"):
        weights_source("imagenet", model_name="resnet18d")
    for name, fmt in [("a.h5", "keras_h5"), ("b.weights.h5", "own_weights"), ("c.keras", "keras_model"),
                      ("d.safetensors", "state_dict"), ("e.pth", "state_dict"), ("f.npz", "state_dict")]:
        (tmp_path / name).write_bytes(b"")
        source = weights_source(tmp_path / name)
        assert (source.kind, source.format, source.weights_file) == ("file", fmt, (tmp_path / name).resolve())
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    (run_folder / "model.keras").write_bytes(b"")
    assert weights_source(run_folder).kind == "run_folder"
    assert str(weights_source(run_folder)).startswith("run folder")
    hub = tmp_path / "timm" / "resnet50d.ra2_in1k"
    write_json(hub / "config.json", {"architecture": "resnet50d", "num_classes": 1000, "model_args": {"num_classes": 1000}})
    (hub / "model.safetensors").write_bytes(b"")
    source = weights_source(hub, model_name="resnet50d")
    assert (source.kind, source.architecture, source.weights_file.name) == ("hub_folder", "resnet50d", "model.safetensors")
    preset = tmp_path / "kh"
    write_json(preset / "config.json", {
        "module": "keras_hub.src.models.resnet.resnet_backbone", "class_name": "ResNetBackbone",
        "registered_name": "keras_hub>ResNetBackbone", "config": {
            "input_conv_filters": [64], "input_conv_kernel_sizes": [7], "stackwise_num_filters": [64, 128, 256, 512],
            "stackwise_num_blocks": [3, 4, 6, 3], "stackwise_num_strides": [1, 2, 2, 2],
            "block_type": "bottleneck_block", "use_pre_activation": False}})
    (preset / "model.weights.h5").write_bytes(b"")
    assert weights_source(preset).architecture == "resnet50"
    with pytest.raises(WeightsError, match=r"KerasHub preset of 'resnet50', not 'resnet101'"):
        weights_source(preset, model_name="resnet101")


def test_weights_source_refusals_say_what_to_pass(tmp_path):
    from restransfer.models.weights import weights_source

    with pytest.raises(WeightsError, match="do not exist"):
        weights_source(tmp_path / "missing.safetensors")
    (tmp_path / "w.ckpt").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"Unknown weights format '\.ckpt'.*hub folder"):
        weights_source(tmp_path / "w.ckpt")
    with pytest.raises(WeightsError, match=r"not a run folder.*hub folder"):
        weights_source(tmp_path)
    hub = write_json(tmp_path / "h" / "config.json", {"architecture": "resnet50"}).parent
    with pytest.raises(WeightsError, match="without its weights: expected model.safetensors"):
        weights_source(hub)
    (hub / "model.safetensors").write_bytes(b"")
    write_json(hub / "config.json", {"architecture": "resnet50", "model_args": {"aa_layer": "blur"}})
    with pytest.raises(WeightsError, match=r"model_args \['aa_layer'\]"):
        weights_source(hub)
    hf = write_json(tmp_path / "hf" / "config.json", {"model_type": "resnet", "architectures": ["ResNetForImageClassification"]}).parent
    with pytest.raises(WeightsError, match="Hugging Face transformers folder"):
        weights_source(hf)
    write_json(tmp_path / "bad" / "config.json", {})
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="as JSON"):
        weights_source(tmp_path / "bad")


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin", "renamed.safetensors"])
def test_a_weights_file_from_a_hub_folder_is_refused_as_the_folder_is(tmp_path, name):
    from restransfer.models.weights import weights_source

    folder = write_json(tmp_path / "resnetaa50.a1h_in1k" / "config.json", {"architecture": "resnetaa50"}).parent
    for file in {name, "model.safetensors"}:
        (folder / file).write_bytes(b"")  # refused before a byte is read
    with pytest.raises(WeightsError, match="anti-aliased") as by_folder:
        weights_source(folder, model_name="resnet50")
    with pytest.raises(WeightsError, match=rf"{name} \(in a hub folder whose config.json names 'resnetaa50'\) "
                                           r"holds timm's 'resnetaa50': anti-aliased downsampling"):
        weights_source(folder / name, model_name="resnet50")
    assert "exactly the names and shapes of resnet50's" in str(by_folder.value)
    with pytest.raises(WeightsError, match=r"holds timm's 'resnetaa50'.*would silently give another network"):
        rt.create_model("resnet50", weights=folder / name, input_shape=(32, 32, 3))
    write_json(folder / "config.json", {"architecture": "resnet50d.ra2_in1k"})
    with pytest.raises(WeightsError, match=r"holds timm's 'resnet50d', not 'resnet50'"):
        weights_source(folder / name, model_name="resnet50")
    write_json(folder / "config.json", {"architecture": "resnet50", "model_args": {"aa_layer": "blur"}})
    with pytest.raises(WeightsError, match=r"model_args \['aa_layer'\]"):
        weights_source(folder / name, model_name="resnet50")
    write_json(folder / "config.json", {"architecture": "resnet50.a1_in1k"})  # the file's own network
    assert weights_source(folder / name, model_name="resnet50").kind == "file"


def test_weights_source_imports_no_keras(tmp_path):
    import subprocess
    import sys

    (tmp_path / "x.h5").write_bytes(b"")
    code = ("import sys; from restransfer.models.weights import weights_source; "
            f"weights_source({str(tmp_path / 'x.h5')!r}); weights_source('imagenet', model_name='resnet50v2'); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
