"""`restransfer lr-find`: the range test on a recipe's phase, with its freezing and data, writing no run."""

import json

import pytest
import yaml
from test_engine import TINY

from restransfer.cli import main
from restransfer.errors import ConfigError
from restransfer.recipe.lr_find import phase_index
from restransfer.recipe.plan import load_plan

pytestmark = pytest.mark.tensorflow

RECIPE = TINY  # two phases: head only, then conv1-2 frozen with SGD and a conv3 multiplier


def test_phase_is_given_by_number_or_name():
    plan = load_plan(RECIPE)
    assert [phase_index(plan, p) for p in ("1", "2", "finetune", 2)] == [0, 1, 1, 1]
    with pytest.raises(ConfigError, match=r"--phase 3: the recipe has no such phase; its phases are 1 \(head\), "
                                          r"2 \(finetune\)"):
        phase_index(plan, "3")


def test_lr_find_runs_the_phase_and_writes_only_the_plot_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    code = main(["lr-find", "r.yaml", "--phase", "finetune", "--steps", "12", "--min-lr", "1e-4", "--max-lr", "10",
                 "--json", "curve.json"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Range test on phase 2/2 'finetune': sgd, rate 0.0001 -> 10 in 12 steps, frozen ['conv1', 'conv2']" in out
    assert "Feature cache: frozen ['conv1', 'conv2'] run once per image" in out  # as the phase trains
    assert "Phase 2 starts from model.weights" in out and "the recipe's rate is 0.01" in out
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert 5 <= len(curve["learning_rates"]) <= 12 and curve["learning_rates"][0] == pytest.approx(1e-4)
    assert curve["stopped"] in ("diverged", "max_lr", "non-finite loss")
    assert (tmp_path / "lr_find-r-phase2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.json", "lr_find-r-phase2.png", "r.yaml"]
    assert main(["lr-find", "r.yaml", "--phase", "7"]) == 2
    assert "no such phase" in capsys.readouterr().err


@pytest.mark.parametrize("setting", ["balanced", "logit_adjusted"])
def test_lr_find_trains_with_the_loss_training_uses(tmp_path, monkeypatch, setting):
    import numpy as np

    import restransfer.training.lr_find as module
    from restransfer.bench.imbalance import write_digit_folders
    from restransfer.recipe.lr_find import lr_find_plan
    from restransfer.training.logit_adjustment import LogitAdjustedCrossentropy

    folders = write_digit_folders(tmp_path / "data", (12, 6, 3), val_per_class=2, digits=(5, 6, 7))
    seen, real = {}, module.lr_find

    def recording(trainer, data, **kwargs):
        seen.update(kwargs, batches=list(data.take(2)))
        return real(trainer, data, **kwargs)

    monkeypatch.setattr(module, "lr_find", recording)
    recipe = {**RECIPE, "data": {"source": "folder", "path": str(folders["train"]), "val_path": str(folders["val"]),
                                 "image_size": 16, "batch_size": 8, "class_weight": setting}}
    result = lr_find_plan(load_plan(recipe), steps=5, min_lr=1e-4, max_lr=1e-2, say=lambda line: None)
    assert len(result.losses) == 5
    if setting == "balanced":
        weights = 21 / (3 * np.array([12, 6, 3]))
        for _, labels, sample_weights in seen["batches"]:
            np.testing.assert_allclose(sample_weights, np.asarray(labels) @ weights, rtol=1e-6)
        assert not isinstance(seen["loss"], LogitAdjustedCrossentropy)
    else:
        assert all(len(batch) == 2 for batch in seen["batches"])
        assert isinstance(seen["loss"], LogitAdjustedCrossentropy)
        np.testing.assert_allclose(seen["loss"].prior, np.array([12, 6, 3]) / 21)
