"""restransfer bench: the JSON it writes and the arithmetic behind its ratios (never its speed)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.src import utils

from restransfer.bench import TrainCase, add_ratios, mfu, run_training
from restransfer.bench.models import build_ours, build_reference, macs_per_image, precision_scope
from restransfer.bench.presets import PRESETS, get_preset
from restransfer.bench.results import markdown_table, peak_flops, train_flops_per_image
from restransfer.bench.timing import FitTimer, StepTimer, summarize
from restransfer.cli import main
from restransfer.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"model", "implementation", "backend", "device", "precision", "jit_compile", "batch_size",
          "image_size", "img_per_s", "step_ms_median", "compile_s", "peak_memory_mb", "ratio_to_reference",
          "mfu", "gmacs_per_image", "timed_steps"}


def test_ratio_is_ours_over_the_reference_of_the_same_case():
    rows = [
        {"case": "a", "implementation": "restransfer", "img_per_s": 90.0},
        {"case": "a", "implementation": "keras.applications", "img_per_s": 120.0},
        {"case": "b", "implementation": "restransfer", "img_per_s": 50.0},
    ]
    add_ratios(rows)
    assert [r["ratio_to_reference"] for r in rows] == [0.75, 1.0, None]


def test_paired_ratio_compares_rounds_that_ran_side_by_side():
    # Round 2 ran on a loaded machine: both slowed down, the paired ratio does not care.
    rows = [
        {"case": "a", "implementation": "restransfer", "img_per_s": 1.0, "round_step_ms": [100, 300, 110]},
        {"case": "a", "implementation": "keras.applications", "img_per_s": 1.0,
         "round_step_ms": [110, 330, 110]},
    ]
    add_ratios(rows)
    assert rows[0]["paired_ratio"] == pytest.approx(1.1)
    assert rows[1]["paired_ratio"] == 1.0


def test_mfu_is_three_forward_passes_over_the_peak():
    macs = 4_089_184_256  # torchvision ResNet-50 at 224 px
    assert train_flops_per_image(macs) == 6 * macs
    assert mfu(3000, macs, 989e12) == pytest.approx(3000 * 6 * macs / 989e12)
    assert mfu(3000, macs, None) is None
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("AMD EPYC (2 cores)") is None
    assert peak_flops("anything", override_tflops=100) == 100e12


def test_summary_takes_the_median_step():
    stats = summarize([0.1, 0.2, 0.3, 10.0], batch_size=8)
    assert stats["step_ms_median"] == pytest.approx(250.0)
    assert stats["img_per_s"] == pytest.approx(8 / 0.25)
    assert stats["timed_steps"] == 4


def test_step_timer_counts_every_step_with_steps_per_execution():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=2)
    timer = StepTimer()
    x, y = np.zeros((16, 4), "float32"), np.zeros((16, 2), "float32")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[timer])
    assert len(timer.step_times) == 8
    assert all(t > 0 for t in timer.step_times)
    # One callback per execution: each pair of steps shares one interval.
    assert timer.step_times[0::2] == timer.step_times[1::2]


def test_our_keras_style_resnet50_is_the_reference_architecture():
    ours = build_ours("resnet50", image_size=64, num_classes=10, style="keras", precision="float32")
    reference = build_reference("ResNet50", image_size=64, num_classes=10, precision="float32")
    assert ours.count_params() == reference.count_params()
    assert macs_per_image(ours) == macs_per_image(reference) > 0


def test_precision_scope_builds_mixed_and_restores_the_policy():
    before = keras.config.dtype_policy().name
    model = build_ours("cifar_resnet20", image_size=32, num_classes=3, style="torchvision",
                       precision="mixed_bfloat16")
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert model.layers[-1].compute_dtype == "float32"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ConfigError, match="precision must be one of"):
        with precision_scope("float8"):
            pass


def test_training_records_are_the_arithmetic_of_the_timed_steps(monkeypatch):
    """A scripted clock: every number in the record follows from the intervals the timers saw."""
    import types

    from restransfer.bench import timing

    ticks = [0.0, 1.0, 1.0, 1.02,  # warm-up: the first step traces the function (1 s), then 20 ms
             2.0, 2.03, 2.03, 2.06, 3.0, 3.05,  # round 1: two timed steps of 30 ms, then one fit() call
             4.0, 4.05, 4.05, 4.10, 5.0, 5.09]  # round 2: 50 ms steps (a slow spell)
    clock = iter(ticks)
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    case = TrainCase("cifar_resnet20", image_size=32, batch_size=4, num_classes=10, jit_compile=False)
    records = run_training([case], steps=2, rounds=2, warmup=1, log=None)
    assert next(clock, "all read") == "all read"
    assert len(records) == 1  # no keras.applications model at this depth
    record = records[0]
    assert FIELDS <= set(record)
    assert record["compile_s"] == pytest.approx(0.98)  # the first step less a steady one
    assert record["round_step_ms"] == pytest.approx([30.0, 50.0])
    assert record["timed_steps"] == 4 and record["step_ms_median"] == pytest.approx(40.0)
    assert record["img_per_s"] == pytest.approx(100.0)  # 4 images per 40 ms
    assert record["fit_step_ms_median"] == pytest.approx(35.0)  # 50 ms and 90 ms per 2-step call
    assert record["ratio_to_reference"] is None and record["reference"] is None
    assert record["gmacs_per_image"] == pytest.approx(0.0408, abs=0.001)  # ResNet-20: 41 M multiply-adds
    assert record["backend"] == keras.backend.backend()


def test_cli_writes_results_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "train", "--models", "cifar_resnet20", "--image-size", "32", "--batch-size", "2",
                 "--steps", "1", "--rounds", "1", "--warmup", "1", "--jit-compile", "false", "--out", str(out)])
    assert code == 0
    payload = json.loads(out.read_text())
    assert payload["environment"]["backend"] == keras.backend.backend()
    assert payload["settings"]["cases"] == ["cifar_resnet20-keras-32px-b2-float32-xla_False"]
    assert payload["settings"]["complete"] is True
    assert FIELDS <= set(payload["results"][0])
    assert "| cifar_resnet20 |" in markdown_table(payload["results"])
    assert payload["command"]  # the docs' Benchmarks page prints it beside the numbers


def test_results_record_the_command_as_a_user_types_it(monkeypatch):
    from restransfer.bench.results import command_line

    monkeypatch.setattr("sys.argv", ["/venv/bin/restransfer", "bench", "transfer", "--out", "a b.json"])
    assert command_line() == "restransfer bench transfer --out 'a b.json'"
    monkeypatch.setattr("sys.argv", ["benchmarks/grouped_conv.py", "--steps", "3"])
    assert command_line() == "python benchmarks/grouped_conv.py --steps 3"


def test_cli_rejects_an_unknown_preset(capsys):
    assert main(["bench", "train", "--preset", "gpuu"]) == 2
    assert "Did you mean 'gpu'" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        get_preset("h100")


def test_gpu_preset_is_bf16_xla_batch_256_at_224():
    cases = PRESETS["gpu"].cases
    assert {c.model for c in cases} >= {"resnet50", "resnext50_32x4d", "resnet101", "resnet152"}
    main_cases = [c for c in cases if c.precision == "mixed_bfloat16"]
    assert all(c.jit_compile is True and c.batch_size == 256 and c.image_size == 224 for c in main_cases)


def test_gpu_lease_preset_puts_the_headline_cases_first():
    cases = PRESETS["gpu-lease"].cases
    first = cases[0]
    assert (first.model, first.style, first.reference_name) == ("resnet50", "keras", "ResNet50")
    assert all(c.precision == "mixed_bfloat16" and c.jit_compile is True and c.image_size == 224 for c in cases)
    assert [c.steps_per_execution for c in cases if c.model == "resnet50" and c.batch_size == 256
            and c.style == "torchvision"] == [1, 4]


def test_steps_per_execution_times_every_step_it_ran():
    case = TrainCase("cifar_resnet20", image_size=32, batch_size=2, num_classes=10, jit_compile=False,
                     steps_per_execution=2)
    record = run_training([case], steps=4, rounds=1, warmup=1, log=None)[0]
    assert record["timed_steps"] == 4 and record["steps_per_execution"] == 2
    assert record["case"].endswith("-spe2")


def test_fit_timer_times_whole_calls_without_a_per_step_hook():
    case = TrainCase("cifar_resnet20", image_size=32, batch_size=2, num_classes=10, jit_compile=False)
    record = run_training([case], steps=3, rounds=2, warmup=1, log=None)[0]
    # Two rounds: each runs 3 steps with the step timer and 3 more as one timed call.
    assert record["fit_step_ms_median"] > 0
    assert record["fit_img_per_s"] == pytest.approx(2 / (record["fit_step_ms_median"] / 1e3))
    assert FitTimer.async_safe and utils.is_default(FitTimer().on_train_batch_end)


def test_the_engine_callbacks_let_keras_dispatch_steps_asynchronously(tmp_path):
    # On JAX (thread-safe) Keras runs batch hooks on a thread only if every callback allows it.
    code = textwrap.dedent(
        f"""
        import keras
        from restransfer.training.callbacks import EpochRecorder, epoch_tensorboard
        recorder = EpochRecorder({str(tmp_path)!r}, [], {{"phase": 0, "phase_name": "p"}}, 10)
        callbacks = keras.callbacks.CallbackList([recorder, epoch_tensorboard({str(tmp_path / "logs")!r})])
        assert callbacks._async_train, "a callback makes every training step wait"
        plain = keras.callbacks.CallbackList([keras.callbacks.TensorBoard({str(tmp_path / "logs")!r})])
        assert not plain._async_train
        print("ok")
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_training_bench_runs_on_jax_without_tensorflow():
    code = textwrap.dedent(
        """
        import sys
        from restransfer.bench import TrainCase, run_training
        r = run_training([TrainCase("cifar_resnet20", image_size=32, batch_size=2, num_classes=10,
                                    jit_compile=True)], steps=2, rounds=1, warmup=1, log=None)[0]
        assert r["backend"] == "jax" and r["jit_compile_resolved"] is True, r
        assert r["timed_steps"] == 2 and r["img_per_s"] > 0
        assert "tensorflow" not in sys.modules, "the JAX bench imported TensorFlow"
        print("ok")
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


@pytest.mark.slow
def test_gpu_script_runs_at_tiny_sizes_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run([str(ROOT / "benchmarks" / "gpu.sh"), "--smoke"], capture_output=True, text=True,
                            env=env, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    train = json.loads((tmp_path / "gpu-train-smoke.json").read_text())
    assert train["environment"]["backend"] == "jax"
    ratios = [r["ratio_to_reference"] for r in train["results"]]
    assert all(r is not None and r > 0 for r in ratios)
    conv = json.loads((tmp_path / "gpu-grouped-conv-smoke.json").read_text())
    assert len(conv["results"]) == 4
    maxbatch = json.loads((tmp_path / "gpu-maxbatch-smoke.json").read_text())
    assert maxbatch["results"][0]["largest_batch"] == 2
