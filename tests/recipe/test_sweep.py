"""`restransfer sweep`: the space is checked against the recipe before any trial, trials are ordinary
(cv) run folders scored on the folds' mean, a killed trial runs again in its folder, pruning stops a
fit, and best.yaml is the best trial's recipe."""

import csv
import json

import keras
import numpy as np
import pytest
import yaml

optuna = pytest.importorskip("optuna")

from restransfer.cli import main  # noqa: E402
from restransfer.errors import ConfigError  # noqa: E402
from restransfer.recipe.load import load_recipe  # noqa: E402
from restransfer.recipe.plan import load_plan  # noqa: E402
from restransfer.recipe.sweep import STUDY, check_space, parse_space, pruning_callback  # noqa: E402

TINY = {
    "model": {"name": "cifar_resnet20", "bn_momentum": 0.9},
    "data": {"source": "digits", "classes": [0, 1], "per_class": 4, "val_per_class": 2, "image_size": 16,
             "batch_size": 6},
    "phases": [{"epochs": 1, "freeze": ["conv1", "conv2"], "optimizer": {"name": "adamw", "learning_rate": 0.01}}],
    "jit_compile": False,
    "precise_bn": False,
}
SPACE = {"phases[0].optimizer.learning_rate": {"log_uniform": [1.0e-3, 1.0e-2]},
         "phases[0].freeze": {"choice": [["conv1"], ["conv1", "conv2"]]}}


def test_space_faults_are_all_named_before_any_trial():
    with pytest.raises(ConfigError) as error:
        parse_space({"phases[0].weight_decay": {"normal": [0, 1]}, "phases[0].epochs": {"int": [3.5, 4]},
                     "phases[0].optimizer.learning_rate": {"log_uniform": [0, 1e-2]}, "seed": {"choice": []}})
    text = str(error.value)
    for fault in ("unknown kind 'normal'", "two integers", "low > 0", "non-empty list"):
        assert fault in text
    dims = parse_space({"phases[0].optimizer.learnig_rate": {"uniform": [0.001, 0.01]},
                        "phases[0].freeze": {"choice": [["conv1"], ["conv9"]]}})
    with pytest.raises(ConfigError) as error:
        check_space(TINY, {}, dims)
    text = str(error.value)
    assert "phases[0].optimizer.learnig_rate = 0.001" in text and "learning_rate" in text  # the typo, with a hint
    assert "phases[0].freeze = [conv9]" in text and "conv9" in text


def test_pruning_callback_stops_fit_when_the_pruner_says_so():
    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    study = optuna.create_study(direction="maximize", pruner=Always())
    trial = study.ask()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    x, y = np.ones((4, 3), "float32"), np.eye(2, dtype="float32")[[0, 1, 0, 1]]
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 1"):
        model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0,
                  callbacks=[pruning_callback(trial, offset=6)])
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {6: 0.5}


@pytest.mark.tensorflow
def test_sweep_on_folds_writes_trials_best_yaml_and_resumes_an_interrupted_trial(tmp_path):
    recipe, space, out = tmp_path / "tiny.yaml", tmp_path / "space.yaml", tmp_path / "sweep"
    recipe.write_text(yaml.safe_dump(TINY))
    space.write_text(yaml.safe_dump(SPACE))
    command = ["sweep", str(recipe), "--space", str(space), "--trials", "1", "--folds", "2", "--out", str(out)]
    assert main(command) == 0
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'sweep.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    for trial in study.trials:
        cv = json.loads((out / trial.user_attrs["run"] / "cv.json").read_text())
        # The tiny recipe leaves checkpoint.monitor and data.class_weight at auto: the runs keep their
        # epoch by balanced accuracy, and the sweep scores the same metric.
        assert trial.value == pytest.approx(cv["summary"]["val_balanced_accuracy"]["mean"])
        folds = [out / trial.user_attrs["run"] / f"fold-{i}" / "recipe.yaml" for i in (1, 2)]
        assert all(f"learning_rate: {trial.params['phases[0].optimizer.learning_rate']}" in f.read_text()
                   for f in folds)
    # A kill during trial 1: the study holds it as running. The rerun runs its values again in its folder.
    interrupted = study.ask({"phases[0].optimizer.learning_rate": optuna.distributions.FloatDistribution(
        1e-3, 1e-2, log=True), "phases[0].freeze": optuna.distributions.CategoricalDistribution(
        ["[conv1]", "[conv1, conv2]"])})
    interrupted.set_user_attr("run", "trial-1")
    assert main([*command[:4], "--trials", "2", *command[6:]]) == 0
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'sweep.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert study.trials[2].params == interrupted.params and study.trials[2].user_attrs["run"] == "trial-1"
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == ["complete", "interrupted", "complete"]
    best = study.best_trial
    recipe_text = (out / "best.yaml").read_text()
    assert f"trial {best.number}" in recipe_text.splitlines()[0]
    tuned = load_recipe(out / "best.yaml")
    assert tuned.phases[0].optimizer.learning_rate == best.params["phases[0].optimizer.learning_rate"]
    assert tuned.phases[0].freeze == yaml.safe_load(best.params["phases[0].freeze"])
    # Another space in the same folder is refused.
    space.write_text(yaml.safe_dump({"phases[0].weight_decay": {"uniform": [0.0, 0.001]}}))
    assert main(command) == 2


def test_the_sweep_objective_is_the_metric_the_runs_keep_their_epoch_by():
    from restransfer.recipe.sweep import sweep_objective

    assert sweep_objective(load_plan(TINY)) == ("val_balanced_accuracy", "maximize")
    assert sweep_objective(load_plan(TINY, {"data.class_weight": "none"})) == ("val_accuracy", "maximize")
    assert sweep_objective(load_plan(TINY, {"checkpoint.monitor": "val_loss"})) == ("val_loss", "minimize")


def test_a_killed_and_resumed_sweep_suggests_what_an_uninterrupted_one_would(tmp_path):
    from restransfer.recipe.sweep import _requeue_killed, optimize, seeded_sampler

    dims = parse_space(SPACE)

    def objective(trial):
        return {d.key: d.suggest(trial) for d in dims}["phases[0].optimizer.learning_rate"]

    def study(name):
        return optuna.create_study(study_name=STUDY, storage=f"sqlite:///{tmp_path / name}", direction="maximize",
                                   load_if_exists=True)

    optimize(study("through.db"), objective, 5, seed=3)
    killed = study("killed.db")
    optimize(killed, objective, 2, seed=3)
    killed.sampler = seeded_sampler(3, 2)  # trial 2 draws its values, then the process dies
    running = killed.ask()
    [d.suggest(running) for d in dims]
    resumed = study("killed.db")  # a new process
    _requeue_killed(resumed, say=lambda line: None)
    optimize(resumed, objective, 5, seed=3)

    def complete(name):
        return [t.params for t in study(name).trials if t.state.name == "COMPLETE"]

    rates = [p["phases[0].optimizer.learning_rate"] for p in complete("killed.db")]
    assert len(set(rates)) == 5  # every trial draws new values
    assert complete("killed.db") == complete("through.db")
