"""`restransfer fit DATA`: a recipe chosen from the folder (and said why), trained as `train`, whose
run folder's recipe.yaml is the whole recipe; a run folder as weights brings its model and size."""

import json
import subprocess
import sys

import numpy as np
import pytest

from restransfer.bench.imbalance import write_digit_folders
from restransfer.errors import DataError
from restransfer.recipe.fit import choose_recipe
from restransfer.training import checkpoint

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_digit_folders(tmp_path_factory.mktemp("fit") / "data", (12, 6, 3), val_per_class=3,
                               digits=(5, 6, 7))


def test_choice_follows_the_data(folders):
    choice = choose_recipe(folders["train"], val=folders["val"])
    recipe, reasons = choice.recipe, "\n".join(choice.reasons)
    assert choice.facts.counts == [12, 6, 3] and choice.facts.median_side == 8
    assert recipe["model"] == {"name": "cifar_resnet20"}
    assert recipe["data"]["image_size"] == 16 and recipe["data"]["val_path"] == str(folders["val"].resolve())
    assert [p["freeze"] for p in recipe["phases"]] == ["none"]
    assert "12 / 3 = 4 (>= 3)" in reasons and "random initialisation" in reasons
    split = choose_recipe(folders["train"], val_split=0.25).recipe["data"]
    assert split["validation_split"] == 0.25 and "val_path" not in split


def test_not_a_class_folder_is_named(tmp_path):
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError, match="at least two classes"):
        choose_recipe(tmp_path)
    with pytest.raises(DataError, match="neither a folder"):
        choose_recipe(tmp_path / "missing.txt")


# Keras warns when a dataset of unknown length ends; the engine's own evaluations silence it (issue 26).
@pytest.mark.filterwarnings("error:Your input ran out of data:UserWarning")
def test_fit_trains_and_its_recipe_reproduces_the_run(folders, tmp_path):
    import restransfer as rt
    from restransfer.recipe.plan import load_plan

    lines = []
    run = rt.fit(folders["train"], val=folders["val"], epochs=1, out=tmp_path / "run", verbose=0,
                 overrides=["data.batch_size=8"], say=lines.append)
    assert any("class weights: auto, logit-adjusted loss" in line for line in lines)
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert metrics["final"]["epochs"] == 1 and metrics["logit_adjustment"] is not None
    recipe_file = tmp_path / "run/recipe.yaml"
    assert load_plan(recipe_file).text == recipe_file.read_text() == run.plan.text

    # The run as weights: its model and image size, a head-only phase, then fine-tuning.
    choice = choose_recipe(folders["train"], val=folders["val"], weights=str(tmp_path / "run"))
    recipe = choice.recipe
    assert recipe["model"]["name"] == "cifar_resnet20" and recipe["model"]["weights"] == str(tmp_path / "run")
    assert recipe["data"]["image_size"] == 16
    assert [p["freeze"] for p in recipe["phases"]] == ["all_but_head", ["conv1", "conv2"]]
    dry = subprocess.run([sys.executable, "-m", "restransfer", "fit", str(folders["train"]), "--val",
                          str(folders["val"]), "--weights", str(tmp_path / "run"), "--dry-run"],
                         capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr
    assert "head-only for" in dry.stdout and "freeze: all_but_head" in dry.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.filterwarnings("error:Your input ran out of data:UserWarning")
def test_posthoc_adjustment_is_folded_into_model_keras_only(folders, tmp_path):
    import restransfer as rt
    from restransfer.models.loading import load_model_file

    rt.fit(folders["train"], val=folders["val"], epochs=1, out=tmp_path / "run", verbose=0,
           overrides=["data.batch_size=8", "data.class_weight=logit_adjusted_posthoc"], say=lambda line: None)
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    prior = [12 / 21, 6 / 21, 3 / 21]
    assert metrics["logit_adjustment"] is None
    assert metrics["posthoc_adjustment"] == pytest.approx(dict(zip(["5", "6", "7"], prior)))
    assert "Post-hoc logit adjustment (data.class_weight: logit_adjusted_posthoc)" in (
        tmp_path / "run/train.log").read_text()
    # model.keras is the kept checkpoint with log(prior) taken off the classifier's bias, nothing else.
    saved = load_model_file(tmp_path / "run/model.keras")
    kept = load_model_file(tmp_path / "run/model.keras")
    checkpoint.restore_best(kept, tmp_path / "run/checkpoints")
    kernel, bias = saved.get_layer("predictions").get_weights()
    kept_kernel, kept_bias = kept.get_layer("predictions").get_weights()
    np.testing.assert_allclose(kernel, kept_kernel)
    np.testing.assert_allclose(bias, kept_bias - np.log(prior), rtol=1e-6, atol=1e-6)
