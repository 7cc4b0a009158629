import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).parents[2] / "benchmarks" / "pipeline_throughput.py"


def test_pipeline_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("pipeline_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "result.json"
    result = bench.run_benchmark(tmp_path / "jpegs", num_images=40, image_size=32, batch_size=8,
                                 cached_epochs=1, rounds=1, out=out, min_side=40, max_side=64)
    assert json.loads(out.read_text()) == result
    assert len(list((tmp_path / "jpegs" / "train").rglob("*.jpg"))) == 40
    rows = result["results"]
    assert set(rows) == set(bench.PIPELINES)
    for name, timing in rows.items():
        assert timing["cold_images_per_s"] > 0 and 0 < timing["first_batch_s"]
        assert timing["first_batch_s"] <= timing["cold_epoch_s"]
        assert ("cached_images_per_s" in timing) == (name != "restransfer_first_run")
        assert timing["cache"] == "memory"
    assert set(result["like_for_like_cold"]) == {
        "restransfer / keras_area", "restransfer_bilinear / keras_default_bilinear"}
    assert all(v > 0 for v in result["like_for_like_cold"].values())
    assert set(result["paired_cold"]) == {"keras_area / restransfer",
                                          "keras_default_bilinear / restransfer_bilinear"}
    assert all(v > 0 for v in result["paired_cold"].values())
    assert all(row["after_first_batch_images_per_s"] >= row["cold_images_per_s"] * 0.5
               for row in rows.values())
    assert all(v > 0 for v in result["stages_cpu_s"].values())
    # Area is closer to PIL's antialiased bilinear than plain bilinear at every shrink factor.
    fidelity = result["resize_fidelity"]["psnr_db_mean_by_shrink_factor"]
    assert set(fidelity["area"]) == {"1.25", "1.5", "2.0", "3.0"}
    assert all(fidelity["area"][s] > fidelity["bilinear"][s] for s in fidelity["area"])
    assert result["machine"]["tensorflow"] and result["batch_size"] == 8
