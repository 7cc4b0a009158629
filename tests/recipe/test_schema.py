"""Validation and resolution: key path, value received, what is allowed, a suggestion; exit status 2.

Every fault knowable from the recipe, the model table and the file system is refused by
``load_plan`` (what ``restransfer validate`` runs), before any data is read.
"""

import subprocess
import sys

import pytest

from restransfer.errors import ConfigError
from restransfer.recipe.load import load_recipe, parse_key_path, set_key
from restransfer.recipe.plan import load_plan

BASE = {
    "model": {"name": "cifar_resnet20"},
    "data": {"source": "digits", "classes": [0, 1, 2], "per_class": 5},
    "phases": [{"epochs": 2, "freeze": "all_but_head"}, {"epochs": 1, "freeze_until": "conv3"}],
}


def error_of(overrides, base=BASE, **kwargs):
    with pytest.raises(ConfigError) as info:
        load_plan(load_recipe(base, overrides, **kwargs))
    assert info.value.exit_code == 2
    return str(info.value)


@pytest.mark.parametrize("override,expected", [
    ("phases[1].optimizer.learning_rate=-0.1",
     ["phases[1].optimizer.learning_rate", "greater than 0", "received -0.1"]),
    ("phases[1].optimizer.lerning_rate=0.1",
     ["phases[1].optimizer.lerning_rate", "unknown key 'lerning_rate'", "Did you mean 'learning_rate'",
      "Allowed keys here: beta_1"]),
    ("phases[0].optimizer.name=adamx",
     ["phases[0].optimizer.name", "'adamx' is not allowed", "allowed: sgd, adam, adamw, rmsprop"]),
    ("model.name=resnet05", ["model.name", "Unknown model 'resnet05'", "Did you mean 'resnet50'"]),
    ("phases[0].freeze=[conv1, conv9]",
     ["phases[0].freeze[1]", "'conv9' is not a stage", "conv1, conv2, conv3, conv4, head"]),
    ("phases[1].freeze_until=conv5", ["phases[1].freeze_until", "'conv5' is not a stage"]),
    ("phases[0].freeze=al_but_head", ["phases[0].freeze", "Did you mean 'all_but_head'"]),
    ("phases[0].freeze=all", ["phases[0].freeze", "nothing would train", "all_but_head"]),
    ("phases[0].epochs=three", ["phases[0].epochs", "valid integer", "received 'three'"]),
    ("phases[0].label_smoothing=1.5", ["phases[0].label_smoothing", "less than 1", "received 1.5"]),
    ("data.per_clas=3", ["data", "per_clas", "Did you mean 'per_class'"]),
    ("data.augment.flp=true", ["data.augment", "flp", "Did you mean 'flip'"]),
    ("jit_compile=maybe", ["jit_compile", "auto, true or false", "'maybe'"]),
    ("precision=float16", ["precision", "'float16' is not allowed", "mixed_float16"]),
    ("export=[coreml]", ["export[0]", "'coreml' is not allowed", "saved_model, keras, tflite, onnx"]),
    ("modle.name=x", ["modle", "unknown key 'modle'", "Did you mean 'model'"]),
    ("model.weights=missing.safetensors", ["model.weights", "missing.safetensors do not exist"]),
    ("model.weights=imagenet", ["model.weights", "weights='imagenet' exists for", "resnet50"]),
    ("phases[1].lr_multipliers={conv2: 0.5}", ["phases[1].lr_multipliers.conv2", "frozen in this phase"]),
    ("phases[1].lr_multipliers={conv3: 0}", ["phases[1].lr_multipliers.conv3", "must be in (0, 100]"]),
    ("phases[1].optimizer={name: adam, momentum: 0.9}", ["momentum does not apply to optimizer adam"]),
])
def test_bad_values_name_the_key_the_value_and_the_fix(override, expected):
    message = error_of([override])
    for part in expected:
        assert part in message, (part, message)


def test_missing_data_path_names_the_path(tmp_path):
    base = {**BASE, "data": {"source": "folder", "path": "flowers/train", "validation_split": 0.2}}
    message = error_of([], base=base, base_dir=tmp_path)
    assert "data.path" in message and str(tmp_path / "flowers/train") in message


def test_all_problems_are_listed_at_once():
    message = error_of(["phases[0].epochs=0", "seed=-1"])
    assert "2 problems" in message and "phases[0].epochs" in message and "seed" in message


def test_overrides_parse_yaml_values_and_reach_nested_keys():
    recipe = load_recipe(BASE, ["phases[0].epochs=3", "phases[1].lr_multipliers={conv3: 0.1}",
                                "phases[1].optimizer.name=sgd", "jit_compile=false", "data.augment.flip=true"])
    assert recipe.phases[0].epochs == 3
    assert recipe.phases[1].lr_multipliers == {"conv3": 0.1}
    assert recipe.phases[1].optimizer.keras_options()["momentum"] == 0.9
    assert recipe.jit_compile is False
    assert recipe.data.augment.flip == "horizontal"
    assert BASE["phases"][0]["epochs"] == 2                 # the caller's mapping is not modified


def test_key_paths():
    assert parse_key_path("phases[10].optimizer.learning_rate") == ["phases", 10, "optimizer", "learning_rate"]
    for bad in ("phases..x", "[0].x", "phases[x]", "a b"):
        with pytest.raises(ConfigError, match="key"):
            parse_key_path(bad)
    tree = {"phases": [{}]}
    with pytest.raises(ConfigError, match="phases has 1 items, so index 3 is out of range"):
        set_key(tree, "phases[3].epochs", 1)
    with pytest.raises(ConfigError, match="must look like KEY=VALUE"):
        load_recipe(BASE, ["phases[0].epochs"])


def test_yaml_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: [cifar_resnet20\nphases: []\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_stages_from_spec_without_building():
    plan = load_plan({**BASE, "model": {"name": "resnet50"}}, ["phases[1].freeze_until=conv5"])
    assert plan.model.stages == ("conv1", "conv2", "conv3", "conv4", "conv5", "head")
    assert plan.phases[0].frozen == ("conv1", "conv2", "conv3", "conv4", "conv5")
    assert plan.phases[1].frozen == ("conv1", "conv2", "conv3", "conv4")
    assert [(p.start_epoch, p.end_epoch) for p in plan.phases] == [(0, 2), (2, 3)]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "restransfer", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_validate_cli_exit_2_without_traceback(tmp_path):
    import yaml

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(BASE))
    good = run_cli("validate", str(path))
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout and "frozen ['conv1', 'conv2']" in good.stdout
    bad = run_cli("validate", str(path), "--set", "phases[1].optimizer.learning_rate=-1")
    assert bad.returncode == 2
    assert "phases[1].optimizer.learning_rate" in bad.stderr and "received -1" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_export_formats_validate_against_the_export_library():
    recipe = load_recipe(BASE, ["export=[saved_model, keras, tflite]"])
    assert recipe.export == ["saved_model", "keras", "tflite"]
