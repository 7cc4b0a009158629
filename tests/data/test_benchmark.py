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
    assert len(list((tmp_path / "jpegs").rglob("*.jpg"))) == 40
    for name in ("restransfer", "keras_image_dataset_from_directory",
                 "keras_reshuffled_each_epoch"):
        timing = result["results"][name]
        assert timing["images"] == 40
        assert timing["cold_images_per_s"] > 0 and timing["cached_images_per_s"] > 0
    assert {"speedup_cold", "speedup_cached", "check_first_s", "machine"} <= set(result)
    assert result["machine"]["tensorflow"] and result["batch_size"] == 8
