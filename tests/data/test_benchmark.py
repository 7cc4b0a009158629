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
    assert set(rows) == {"restransfer", "restransfer_first_run", "keras_default_bilinear",
                         "keras_area", "keras_reshuffled_each_epoch"}
    for name, timing in rows.items():
        assert timing["cold_images_per_s"] > 0 and 0 < timing["first_batch_s"]
        assert timing["first_batch_s"] <= timing["cold_epoch_s"]
        assert ("cached_images_per_s" in timing) == (name != "restransfer_first_run")
    assert set(result["ours_over_keras_cold"]) == {n for n in rows if n.startswith("keras")}
    assert result["restransfer_cache"] == "memory"
    assert all(v > 0 for v in result["stages_cpu_s"].values())
    assert result["machine"]["tensorflow"] and result["batch_size"] == 8
