"""The Plan: every fault knowable from the recipe, the model table and the disk fails at validate.

Each row is a faulty recipe (one bad value) that used to pass validation and fail only after
the data had loaded, or never be refused; each must now be refused by ``load_plan`` with the key
path and the reason in one message.
"""

from pathlib import Path

import numpy as np
import pytest

from restransfer.errors import ConfigError
from restransfer.recipe.decisions import Decision
from restransfer.recipe.plan import load_plan

BASE = {
    "model": {"name": "cifar_resnet20"},
    "data": {"source": "digits", "classes": [0, 1, 2], "per_class": 5},
    "phases": [{"epochs": 2, "freeze": ["conv1"]}],
}


def _fault(overrides):
    with pytest.raises(ConfigError) as info:
        load_plan(BASE, overrides)
    assert info.value.exit_code == 2
    return str(info.value)


@pytest.mark.parametrize("override,expected", [
    # The three: builder options checked by the builder's own helper.
    ("model.output_stride=16", ["model.output_stride", "CIFAR ResNet always has output stride 4"]),
    ("model.norm=group", None),
    ("model.norm_groups=7", ["model.norm_groups", "applies to norm='group' only"]),
    ("data.image_size=3", ["data.image_size", "between 8 and 4096"]),
    ("model.shortcut=C", ["model.shortcut", "'C' is not allowed"]),
    ("model.drop_path_rate=1.0", ["model.drop_path_rate", "must be in [0, 1)"]),
    ("model.norm_groups=0", ["model.norm_groups", "positive number of groups"]),
    ("model.style=caffe", ["model.style", "'caffe' is not allowed", "torchvision, keras"]),
    ("model.norm=batchnorm", ["model.norm", "allowed: batch, sync_batch, group"]),
    ("model.bn_momentum=1.5", ["model.bn_momentum", "less than 1"]),
    ("model.weights=/etc/passwd", ["model.weights", "Unknown weights format", "passwd"]),
    ("model.weights=3", ["model.weights", "a weights file or a run folder"]),
    ("head.hidden=0", ["head.hidden", "greater than or equal to 1"]),
    ("head.dropout=1", ["head.dropout", "less than 1"]),
    ("phases[0].epochs=true", ["phases[0].epochs", "valid integer"]),
    ("phases[0].epochs=0", ["phases[0].epochs", "greater than or equal to 1"]),
    ("phases[0].optimizer.learning_rate='0.1'", ["phases[0].optimizer.learning_rate", "received '0.1'"]),
    ("phases[0].optimizer.nesterov=true", ["phases[0].optimizer.nesterov", "applies to sgd"]),
    ("phases[0].schedule.warmup_epochs=5", ["phases[0].schedule.warmup_epochs", "longer than the phase"]),
    ("phases[0].schedule.milestones=[1]", ["phases[0].schedule.milestones", "step schedule, not cosine"]),
    ("phases[0].schedule={name: step, milestones: [1, 3]}", ["phases[0].schedule.milestones", "inside the phase"]),
    ("phases[0].schedule.name=exp", ["phases[0].schedule.name", "constant, cosine, linear, step"]),
    ("phases[0].lr_multipliers={conv7: 0.1}", ["phases[0].lr_multipliers.conv7", "not a stage of cifar_resnet20"]),
    ("phases[0].freeze=[conv1, head, conv2, conv3, conv4]", ["phases[0].freeze", "every stage is frozen"]),
    ("phases[0].freeze_until=conv3", ["phases[0].freeze", "not both"]),
    ("data.batch_size=18446744073709551616", ["data.batch_size", "less than or equal to 65536"]),
    ("data.batch_size=100000", ["data.batch_size", "less than or equal to 65536"]),
    ("data.source=imagefolder", ["data.source", "allowed: folder, csv, tfds, digits, glyphs, arrays"]),
    ("data.cache=ram", ["data.cache", "allowed: auto, memory, file, none"]),
    ("data.image_size=5000", ["data.image_size", "between 8 and 4096"]),
    ("distribution.strategy=data_parallel", ["distribution.strategy", "JAX backend"]),
    ("distribution.base_batch_size=0", ["distribution.base_batch_size", "greater than or equal to 1"]),
    ("precision=bfloat16", ["precision", "mixed_bfloat16"]),
    ("seed=-1", ["seed", "greater than or equal to 0"]),
    ("export=[coreml]", ["export[0]", "saved_model, keras, tflite, onnx"]),
])
def test_fault_is_refused_at_validate_with_its_key_path(override, expected):
    if expected is None:  # a valid change on its own: group norm with its default groups resolves
        assert load_plan(BASE, [override]).model.options["norm"] == "group"
        return
    message = _fault([override])
    for part in expected:
        assert part in message, (part, message)


def test_group_norm_groups_that_do_not_divide_the_channels_name_the_valid_ones():
    message = _fault(["model.norm=group", "model.norm_groups=7"])
    assert "model.norm_groups: norm_groups=7 does not divide the 16 channels" in message
    assert "[1, 2, 4, 8, 16]" in message
    assert load_plan(BASE, ["model.norm=group", "model.norm_groups=8"]).model.options["norm_groups"] == 8


def test_weights_faults_found_on_disk(tmp_path):
    folder = tmp_path / "notarun"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    assert "not a run folder" in _fault([f"model.weights={folder}"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"status": "finished", "model": "cifar_resnet32"}')
    (run / "model.keras").write_bytes(b"stand-in")
    assert "trained cifar_resnet32, but the model is cifar_resnet20" in _fault([f"model.weights={run}"])
    state_dict = tmp_path / "resnet18.npz"
    np.savez(state_dict, w=np.zeros(1))
    assert "no torchvision/timm counterpart" in _fault([f"model.weights={state_dict}"])


def test_imagenet_needs_the_keras_style():
    message = _fault(["model.name=resnet50", "model.weights=imagenet", "model.style=torchvision"])
    assert "model.weights" in message and "style='keras'" in message
    plan = load_plan(BASE, ["model.name=resnet50", "model.weights=imagenet"])
    assert plan.model.options["style"] == "keras" and plan.model.weights.kind == "imagenet"


def test_all_faults_are_reported_at_once():
    message = _fault(["model.output_stride=16", "phases[0].schedule.warmup_epochs=9"])
    assert "has 2 problems" in message
    assert "model.output_stride" in message and "phases[0].schedule.warmup_epochs" in message


def test_relative_paths_resolve_against_the_current_directory_for_every_command(tmp_path, monkeypatch):
    """`data check RECIPE` and `train RECIPE` read the same folders: the current directory is the base."""
    from PIL import Image

    from restransfer.commands.data import listing_for

    for split in ("train", "val"):
        for label in ("a", "b"):
            (tmp_path / "images" / split / label).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "images" / split / label / "x.png")
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    recipe = recipes / "r.yaml"
    recipe.write_text("model: {name: cifar_resnet20}\n"
                      "data: {source: folder, path: images/train, val_path: images/val}\n"
                      "phases: [{epochs: 1}]\n")
    monkeypatch.chdir(tmp_path)
    plan = load_plan(recipe)
    assert plan.data.path == tmp_path / "images" / "train"
    assert plan.name == "r"
    listing = listing_for(Path("recipes/r.yaml"))
    assert sorted(Path(p).parent.parent for p in listing.parts["train"].paths) == [plan.data.path] * 2
    assert sorted(Path(p).parent.parent for p in listing.parts["val"].paths) == [plan.data.val_path] * 2


def test_feature_cache_is_resolved_per_phase_and_true_refuses_what_cannot_be_cached():
    plan = load_plan(BASE)
    assert plan.phases[0].decisions.feature_cache is None  # auto: the built model and the data decide
    two = {**BASE, "phases": [{"epochs": 1, "freeze": "all_but_head"}, {"epochs": 1, "freeze": ["conv2"]}]}
    assert [p.decisions.feature_cache for p in load_plan(two, ["feature_cache=true"]).phases] == [
        None, Decision(None, "the phase freezes no leading stage")]
    off = load_plan(BASE, ["data.augment.flip=horizontal"]).phases[0]
    assert off.decisions.feature_cache == Decision(None, "data.augment changes the images before the frozen stages")
    assert load_plan(BASE, ["feature_cache=false"]).phases[0].decisions.feature_cache == Decision(
        None, "feature_cache: false")
    message = _fault(["feature_cache=true", "data.augment.flip=horizontal"])
    assert "feature_cache: true, but the output of phases[0].freeze (conv1) cannot be computed once: " \
           "data.augment changes the images" in message
    message = _fault(["feature_cache=true", "model.drop_path_rate=0.1", "phases[0].freeze=[conv1, conv2]"])
    assert "model.drop_path_rate 0.1 drops residual branches" in message
    assert load_plan(BASE, ["feature_cache=true", "model.drop_path_rate=0.1"]).phases[0].decisions.feature_cache is None
    assert "feature_cache: must be auto, true or false; received 1" in _fault(["feature_cache=1"])


@pytest.mark.parametrize(("freeze", "head_only"), [
    ("all_but_head", True), (["conv1", "conv2", "conv3", "conv4"], True), (["conv1"], False), ("none", False)])
def test_a_phase_knows_whether_it_trains_only_the_head(freeze, head_only):
    assert load_plan(BASE, {"phases[0].freeze": freeze}).phases[0].head_only is head_only
