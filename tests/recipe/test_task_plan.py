"""`task: multi_label` in the recipe: validate refuses what cannot work, the Plan decides its consequences."""

import pytest

from restransfer.errors import ConfigError
from restransfer.recipe.decisions import DataFacts, Decision, explain
from restransfer.recipe.plan import load_plan


@pytest.fixture
def recipe(tmp_path):
    (tmp_path / "t.csv").write_text("path,labels\n0.jpg,a;b\n")
    return {"task": "multi_label", "model": {"name": "cifar_resnet20"},
            "data": {"source": "csv", "path": str(tmp_path / "t.csv"), "validation_split": 0.5, "image_size": 16},
            "phases": [{"epochs": 1}]}


def _refused(recipe, overrides=()):
    with pytest.raises(ConfigError) as info:
        load_plan(recipe, list(overrides))
    return str(info.value)


def test_a_multi_label_plan_decides_its_loss_head_metrics_and_monitor(recipe):
    plan = load_plan(recipe)
    run = plan.decisions
    assert plan.task == "multi_label"
    assert run.head_activation.value == "sigmoid" and run.loss.value == "binary_crossentropy"
    assert run.metrics.value == ("map", "exact_match")
    assert run.checkpoint_monitor.value == "val_map" and "multi_label" in run.checkpoint_monitor.reason
    assert run.class_weights.value is None and "per-label weights are not implemented" in run.class_weights.reason
    assert any(line.startswith("loss: binary_crossentropy (task multi_label") for line in explain(plan))


def test_single_label_is_the_default_and_decides_as_before(recipe):
    plan = load_plan({**recipe, "task": "single_label"})
    assert plan.decisions.loss == Decision("categorical_crossentropy",
                                           "task single_label: one softmax over exclusive classes")
    assert plan.decisions.metrics is None  # top-5 needs the class count
    from restransfer.recipe.decisions import decide

    facts = DataFacts(num_train=8, num_val=4, class_names=tuple("abcdef"), train_counts=(2,) * 6, train_batches=2,
                      batch_size=4)
    assert decide(plan, facts).decisions.metrics.value == ("accuracy", "balanced_accuracy", "top5_accuracy")
    assert load_plan({k: v for k, v in recipe.items() if k != "task"}).task == "single_label"


def test_sources_monitors_and_class_weights_that_cannot_serve_multi_label_are_refused(recipe):
    message = _refused({**recipe, "data": {"source": "digits", "classes": [0, 1], "per_class": 5}})
    assert "task: the digits source cannot carry several labels" in message and "restransfer data grid" in message
    message = _refused(recipe, ["checkpoint.monitor=val_accuracy"])
    assert "checkpoint.monitor: val_accuracy is a single-label figure" in message
    message = _refused(recipe, ["data.class_weight=balanced"])
    assert "data.class_weight: a multi_label run does not weigh its labels" in message
    message = _refused({**recipe, "task": "single_label"}, ["checkpoint.monitor=val_map"])
    assert "val_map is a multi-label figure" in message


def test_the_data_check_of_a_recipe_refuses_data_of_the_other_kind(tmp_path, capsys):
    from restransfer.cli import main
    from tests.data.conftest import image_bytes, write

    for i in range(4):
        write(tmp_path / f"{i}.jpg", image_bytes(size=(20, 20), seed=i))
    (tmp_path / "t.csv").write_text("path,label\n0.jpg,a\n1.jpg,b\n2.jpg,a\n3.jpg,b\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: multi_label\nmodel: {{name: cifar_resnet20}}\ndata: {{source: csv, path: {tmp_path}/t.csv,"
                      " validation_split: 0.5, image_size: 16}\nphases: [{epochs: 1}]\n")
    assert main(["data", "check", str(recipe)]) != 0
    assert "gives one class per image but the recipe's task is multi_label" in " ".join(capsys.readouterr().err.split())
    (tmp_path / "t.csv").write_text("path,labels\n0.jpg,a;b\n1.jpg,b\n2.jpg,\n3.jpg,a\n")
    assert main(["data", "check", str(recipe)]) == 0
    assert "images per label" in capsys.readouterr().out


def test_calibration_and_folds_that_cannot_serve_multi_label_are_refused(recipe):
    message = _refused(recipe, ["calibration=temperature"])
    assert "calibration: temperature fits a softmax temperature" in message and "calibration: none" in message
    message = _refused(recipe, ["data.fold={folds: 2, index: 1}"])
    assert "data.fold: folds are stratified by one class per image" in message


def test_cross_validation_of_a_multi_label_recipe_stops_before_any_work(recipe, tmp_path):
    from restransfer.recipe.cross_validation import cross_validate

    with pytest.raises(ConfigError, match="not available for multi_label"):
        cross_validate(recipe, folds=2, out=tmp_path / "cv")
    assert not (tmp_path / "cv").exists()
