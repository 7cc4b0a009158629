import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "benchmarks" / "pipeline_throughput.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("pipeline_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_pipeline_benchmark_smoke(tmp_path):
    bench = load_bench()
    out = tmp_path / "result.json"
    result = bench.run_benchmark(tmp_path / "jpegs", num_images=40, image_size=32, batch_size=8,
                                 cached_epochs=1, rounds=1, out=out, min_side=40, max_side=64)
    assert json.loads(out.read_text()) == result
    assert len(list((tmp_path / "jpegs" / "train").rglob("*.jpg"))) == 40
    rows = result["results"]
    assert set(rows) == set(bench.PIPELINES)
    for name, timing in rows.items():
        # Every pipeline read all 40 images (run_benchmark checks the count) in the time it states.
        # cold_epoch_s is rounded to the millisecond and cold_images_per_s to 0.1: the epoch the
        # rate implies lies within both roundings of the stated one, on a fast CPU or a slow one.
        rate, epoch = timing["cold_images_per_s"], timing["cold_epoch_s"]
        assert 40 / (rate + 0.05) - 0.0005 <= epoch <= 40 / (rate - 0.05) + 0.0005
        assert timing["cold_epoch_s_all"] == [pytest.approx(timing["cold_epoch_s"], abs=0.0051)]  # 0.01 vs 0.001 rounding
        assert 0 < timing["first_batch_s"] <= timing["cold_epoch_s"]
        assert ("cached_images_per_s" in timing) == (name != "restransfer_first_run")
        assert timing["cache"] == "memory"
    # The ratios are those of the rows they name.
    for ours, ref in bench.LIKE_FOR_LIKE.items():
        assert result["like_for_like_cold"][f"{ours} / {ref}"] == pytest.approx(
            rows[ours]["cold_images_per_s"] / rows[ref]["cold_images_per_s"], abs=1e-3)
        assert result["like_for_like_cached"][f"{ours} / {ref}"] == pytest.approx(
            rows[ours]["cached_images_per_s"] / rows[ref]["cached_images_per_s"], abs=1e-3)
        slow, fast = rows[ref]["cold_epoch_s"], rows[ours]["cold_epoch_s"]  # each +- 0.0005 s of rounding
        assert (slow - 0.0005) / (fast + 0.0005) - 0.001 <= result["paired_cold"][f"{ref} / {ours}"] \
            <= (slow + 0.0005) / max(fast - 0.0005, 1e-9) + 0.001
    assert set(result["stages_cpu_s"]) >= {"read", "read_decode"}
    # Area is closer to PIL's antialiased bilinear than plain bilinear at every shrink factor.
    fidelity = result["resize_fidelity"]["psnr_db_mean_by_shrink_factor"]
    assert set(fidelity["area"]) == {"1.25", "1.5", "2.0", "3.0"}
    assert all(fidelity["area"][s] > fidelity["bilinear"][s] for s in fidelity["area"])
    assert result["machine"]["tensorflow"] and result["batch_size"] == 8


def test_pipeline_benchmark_keeps_the_best_round_and_pairs_rounds(tmp_path, monkeypatch):
    """Measurements given, the summary is exact: best round per pipeline, paired ratios per round."""
    bench = load_bench()
    # Cold epoch seconds of 40 images per round; round 2 ran on a loaded machine for everyone.
    walls = {name: [1.0 + i / 10, 2.0 + i / 10] for i, name in enumerate(bench.PIPELINES)}
    walls["keras_area"] = [2.0, 3.0]  # restransfer: [1.0, 2.0]; paired keras_area / restransfer: 2.0, 1.5
    spawned = []

    def spawn(name, *args):
        spawned.append(name)
        if len(spawned) == 1:  # the first call only fills the verdict cache
            return {}
        wall = walls[name][spawned[1:].count(name) - 1]
        epoch = {"wall": wall, "cpu": wall / 2, "first_batch": wall / 4, "images": 40}
        cached = [] if name == "restransfer_first_run" else [{**epoch, "wall": wall / 10}]
        return {"cold": epoch, "cached": cached, "cache": "memory"}

    monkeypatch.setattr(bench, "_spawn", spawn)
    monkeypatch.setattr(bench, "profile_stages", lambda *a, **k: {})
    result = bench.run_benchmark(tmp_path, num_images=40, image_size=32, batch_size=8, cached_epochs=1,
                                 rounds=2, out=None, min_side=40, max_side=48)
    assert spawned[0] == "restransfer" and sorted(spawned[1:]) == sorted(bench.PIPELINES * 2)
    rows = result["results"]
    assert rows["restransfer"]["cold_epoch_s"] == 1.0 and rows["restransfer"]["cold_images_per_s"] == 40.0
    assert rows["restransfer"]["cold_epoch_s_all"] == [1.0, 2.0]
    assert rows["restransfer"]["cached_images_per_s"] == 400.0
    assert rows["keras_area"]["cold_images_per_s"] == 20.0
    # The remaining 32 images after the first batch (at a quarter of the epoch), best round.
    assert rows["restransfer"]["after_first_batch_images_per_s"] == round(32 / 0.75, 1)
    assert result["like_for_like_cold"]["restransfer / keras_area"] == 2.0
    assert result["paired_cold"]["keras_area / restransfer"] == 1.75  # median of 2.0 and 1.5
    assert result["like_for_like_cached"]["restransfer / keras_area"] == 2.0
    assert "cached_images_per_s" not in rows["restransfer_first_run"]
