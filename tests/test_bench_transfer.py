"""restransfer bench transfer: its summaries' arithmetic, and one tiny run of every code path."""

import json
import zipfile
from pathlib import Path

import pytest

from restransfer.bench.transfer import FREEZES, INITS, SMOKE, markdown_summary, mean_sd, summarize
from restransfer.cli import main


def finetune(seed, init, freeze, accuracy, epoch, cached=False, timing=False, size=16):
    return {"kind": "finetune", "seed": seed, "init": init, "freeze": freeze, "feature_cache": cached,
            "timing": timing, "image_size": [size, size],
            "feature_pass_seconds": 0.5 if cached else None, "val_accuracy": accuracy,
            "val_accuracy_before_precise_bn": accuracy - 0.1, "train_seconds": 10.0 * epoch,
            "steady_epoch_seconds": epoch, "epoch_seconds": [5 * epoch, epoch, 2 * epoch, epoch / 2]}


def test_summary_is_mean_and_sample_sd_over_seeds_with_the_cache_paired_per_seed():
    records = [
        finetune(0, "transfer", "all_but_head", 0.8, 0.1, cached=True),
        finetune(0, "transfer", "all_but_head", 0.7, 1.0, timing=True),  # its uncached twin
        finetune(1, "transfer", "all_but_head", 0.6, 0.2, cached=True),
        finetune(1, "transfer", "all_but_head", 0.6, 1.0, timing=True),
        # A timing pair at 32 px: its own speed-up, not a row of the accuracy table.
        finetune(0, "transfer", "all_but_head", 0.1, 0.1, cached=True, timing=True, size=32),
        finetune(0, "transfer", "all_but_head", 0.1, 2.0, timing=True, size=32),
        finetune(0, "scratch", "none", 0.5, 2.0),
        finetune(1, "scratch", "none", 0.7, 2.0),
        {"kind": "probe", "seed": 0, "val_accuracy": 0.75}, {"kind": "probe", "seed": 1, "val_accuracy": 0.85},
    ]
    summary = summarize(records)
    rows = {(row["init"], row["freeze"]): row for row in summary["runs"]}
    assert set(rows) == {("transfer", "all_but_head"), ("scratch", "none")}
    assert rows["transfer", "all_but_head"]["val_accuracy"] == pytest.approx(
        {"mean": 0.7, "sd": 0.1414213, "min": 0.6, "max": 0.8, "n": 2}, rel=1e-5)
    assert rows["scratch", "none"]["before_precise_bn"]["mean"] == pytest.approx(0.5)
    assert summary["probe"]["mean"] == pytest.approx(0.8)
    cache, large = summary["feature_cache"]
    assert (cache["image_size"], large["image_size"]) == ([16, 16], [32, 32])
    assert large["speedup"] == {"mean": 20.0, "sd": 0.0, "min": 20.0, "max": 20.0, "n": 1}
    assert cache["speedup"]["mean"] == pytest.approx((10 + 5) / 2)  # per seed, then averaged
    assert cache["speedup_median"] == pytest.approx(7.5)
    assert cache["speedup_fastest_epochs"]["mean"] == pytest.approx((0.5 / 0.05 + 0.5 / 0.1) / 2)
    assert cache["val_accuracy_uncached"]["mean"] == pytest.approx(0.65)
    table = markdown_summary(summary)
    assert "| all_but_head | transfer | 0.700 +- 0.141 (0.600 .. 0.800) |" in table
    assert "| 16x16 px, speed-up, paired per seed (median 7.5) | 7.5 +- 3.5 (5.0 .. 10.0) | |" in table
    assert "| 32x32 px, speed-up, paired per seed (median 20.0) | 20.0 +- 0.0 (20.0 .. 20.0) | |" in table
    assert "quickstart_runs_seconds" not in summary  # no seed has all three quickstart runs
    records += [{"kind": "source", "seed": 2, "val_accuracy": 0.9, "wall_seconds": 50.0},
                {**finetune(2, "transfer", "conv1-2", 0.9, 1.0), "wall_seconds": 20.0},
                {**finetune(2, "scratch", "none", 0.6, 1.0), "wall_seconds": 25.0}]
    assert summarize(records)["quickstart_runs_seconds"]["mean"] == 95.0
    assert mean_sd([1.0]) == {"mean": 1.0, "sd": 0.0, "min": 1.0, "max": 1.0, "n": 1}


def test_command_offers_the_library_choices():
    from restransfer.commands import bench as command

    assert command.TRANSFER_FREEZES == tuple(FREEZES) and command.TRANSFER_INITS == INITS


@pytest.mark.tensorflow
def test_smoke_run_writes_every_record_and_the_cache_changes_no_file(tmp_path, capsys):
    out = tmp_path / "transfer.json"
    assert main(["bench", "transfer", "--smoke", "--workdir", str(tmp_path / "runs"), "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    records = payload["results"]
    assert [r["kind"] for r in records] == ["source", "probe", "finetune", "finetune"]
    cached, uncached = records[2:]
    assert (cached["freeze"], uncached["freeze"]) == ("all_but_head", "all_but_head")
    assert (cached["feature_cache"], uncached["feature_cache"]) == (True, False)
    assert cached["feature_pass_seconds"] > 0 and uncached["feature_pass_seconds"] is None
    assert 0.0 <= records[1]["val_accuracy"] <= 1.0 and records[1]["num_train"] == 15  # 3 per class
    assert payload["settings"]["seeds"] == list(SMOKE.seeds) and "summary" in payload["settings"]
    # The recipes the runs used, as text: a results file says what it measured.
    assert set(payload["settings"]["recipes"]) == {"source", "transfer", "scratch"}
    shipped = Path(__file__).resolve().parents[1] / "recipes" / "quickstart_source.yaml"
    assert payload["settings"]["recipes"]["source"] == shipped.read_text()
    assert "speed-up, paired per seed" in capsys.readouterr().out
    # The same run folder with and without the cache: the same files, the same model.
    folders = [tmp_path / "runs" / "seed0" / name for name in ("transfer-all_but_head", "transfer-all_but_head-uncached")]
    listings = [sorted(str(p.relative_to(f)) for p in f.rglob("*") if "logs" not in p.parts) for f in folders]
    assert listings[0] == listings[1]
    configs = [json.loads(zipfile.ZipFile(f / "model.keras").read("config.json")) for f in folders]
    assert configs[0] == configs[1]


def test_keras_baseline_rows_pair_with_the_runs_they_mirror():
    def keras(seed, run, accuracy):
        return {"kind": "keras", "seed": seed, "run": run, "val_accuracy": accuracy, "wall_seconds": 2.0}

    records = [
        {"kind": "source", "seed": 0, "val_accuracy": 0.9, "wall_seconds": 30.0},
        *({**finetune(*args), "wall_seconds": 1.0} for args in (
            (0, "transfer", "conv1-2", 0.8, 1.0), (1, "transfer", "conv1-2", 0.6, 1.0), (0, "scratch", "none", 0.5, 1.0))),
        keras(0, "source", 0.7), keras(0, "transfer", 0.4), keras(1, "transfer", 0.2), keras(0, "scratch", 0.3),
    ]
    rows = {row["run"]: row for row in summarize(records)["keras_baseline"]}
    assert set(rows) == {"source", "transfer", "scratch"}  # no head-only run here
    assert rows["transfer"]["keras"]["mean"] == pytest.approx(0.3)
    assert rows["transfer"]["restransfer"]["mean"] == pytest.approx(0.7)
    assert rows["source"]["restransfer"]["mean"] == pytest.approx(0.9)
    assert "| transfer | 0.700 +- 0.141 (0.600 .. 0.800) | 1.0 | 0.300 +- 0.141" in markdown_summary(
        summarize(records))


@pytest.mark.tensorflow
def test_the_plain_keras_resnet20_is_restransfers_cifar_resnet20():
    import restransfer as rt
    from restransfer.bench.keras_baseline import resnet20

    ours = rt.create_model("cifar_resnet20", num_classes=10, input_shape=(16, 16, 3))
    plain = resnet20(10, 0.9, (16, 16))
    assert plain.count_params() == ours.count_params()


@pytest.mark.tensorflow
def test_a_frozen_stage_of_the_plain_keras_phase_does_not_move():
    import numpy as np

    from restransfer.bench.keras_baseline import fit_phase, resnet20
    from restransfer.recipe.schema import PhaseConfig

    model = resnet20(3, 0.9, (8, 8))
    before = {w.path: np.array(w) for w in model.weights}
    rng = np.random.default_rng(0)
    phase = PhaseConfig(epochs=1, optimizer={"name": "adamw", "learning_rate": 0.01})
    fit_phase(model, phase, 4, rng.uniform(0, 255, (8, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 8), 0,
              frozen=("conv1", "conv2"))
    after = {w.path: np.array(w) for w in model.weights}
    moved = {path for path in before if not np.array_equal(before[path], after[path])}
    assert moved and not any(path.startswith(("conv1", "conv2")) for path in moved)
    assert any(path.startswith("conv3") for path in moved)
