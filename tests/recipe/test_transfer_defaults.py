"""Transfer defaults in a real run: precise BN after a phase that trains BatchNorm, the new head's start."""

import json

import keras
import numpy as np
import pytest

import restransfer as rt
from restransfer.data import load_data

RECIPE = {
    "model": {"name": "cifar_resnet20", "bn_momentum": 0.9},
    "data": {"source": "digits", "classes": [0, 1, 2], "per_class": 8, "val_per_class": 6, "batch_size": 8},
    "phases": [
        {"name": "head", "epochs": 1, "freeze": "all_but_head", "optimizer": {"name": "adamw", "learning_rate": 0.01}},
        {"name": "finetune", "epochs": 1, "freeze_until": "conv3", "optimizer": {"name": "adamw", "learning_rate": 0.01}},
    ],
    "jit_compile": False,
}


def exact_statistics(run_dir, layer_name: str):
    """Mean and variance of a BN layer's input over the training images (its input is frozen layers only)."""
    model = keras.saving.load_model(run_dir / "model.keras")
    layer = model.get_layer(layer_name)
    data = load_data(**RECIPE["data"], seed=0)
    images = np.concatenate([np.asarray(x) for x, _ in data.train_unaugmented])
    inputs = keras.Model(model.inputs, layer.input).predict(images, verbose=0).astype(np.float64)
    return (np.asarray(layer.moving_mean), np.asarray(layer.moving_variance),
            inputs.mean(axis=(0, 1, 2)), inputs.var(axis=(0, 1, 2)))


@pytest.mark.parametrize("precise", ["auto", False])
def test_precise_bn_after_the_phase_that_trains_batch_norm(tmp_path, precise):
    run = rt.train({**RECIPE, "precise_bn": precise}, out=tmp_path / "run", verbose=0)
    log = (tmp_path / "run" / "train.log").read_text()
    phases = json.loads((tmp_path / "run" / "metrics.json").read_text())["phases"]
    # conv3_block1_1_bn is the first BatchNorm that trains; conv1 and conv2 are frozen.
    mean, variance, exact_mean, exact_variance = exact_statistics(run.run_dir, "conv3_block1_1_bn")
    if precise == "auto":
        assert log.count("Precise BN (auto: 24 training images <= 8192): moving statistics of 12 BatchNorm "
                         "layers recomputed from 24 training images (3 batches, no augmentation)") == 1, log
        assert phases[0]["precise_bn"] is None and phases[1]["precise_bn"]["images"] == 24
        np.testing.assert_allclose(mean, exact_mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(variance, exact_variance, rtol=1e-4, atol=1e-4)
    else:
        assert "Precise BN" not in log and phases[1]["precise_bn"] is None
        # One epoch of moving averages is far from the exact statistics: the switch matters.
        assert np.max(np.abs(variance - exact_variance) / exact_variance) > 0.05


def test_a_random_backbone_gets_a_random_head_at_the_phase_rate(tmp_path):
    # A zero head would pass the backbone no gradient; from scratch the head is no newer than the rest.
    rt.train({**RECIPE, "phases": RECIPE["phases"][:1]}, out=tmp_path / "scratch", verbose=0)
    log = (tmp_path / "scratch" / "train.log").read_text()
    assert "Head (auto: random backbone): Glorot-uniform kernel, zero bias; learning rate x1 " in log
    assert "lr multipliers {'head': 1.0}" in log
    assert "Precise BN" not in log  # nothing but the head trained


def test_a_zero_head_learns_ten_times_faster(tmp_path):
    rt.train({**RECIPE, "head": {"init": "zeros"}, "phases": RECIPE["phases"][:1]}, out=tmp_path / "zero", verbose=0)
    log = (tmp_path / "zero" / "train.log").read_text()
    assert "Head (zeros): zero kernel and bias (uniform predictions); learning rate x10" in log
    assert "lr multipliers {'head': 10.0}" in log


def test_a_head_only_phase_reaches_a_logistic_regression_on_the_same_features(tmp_path):
    # A short pretraining on digits 0-4, then a head-only phase on 5-9 with the default head
    # (auto: a pretrained backbone and a small set start from the probe, then train).
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source = {**RECIPE, "data": {**RECIPE["data"], "classes": [0, 1, 2, 3, 4], "per_class": 30, "batch_size": 32},
              "phases": [{"epochs": 2, "optimizer": {"name": "adamw", "learning_rate": 0.003}}]}
    rt.train(source, out=tmp_path / "source", verbose=0)
    data = {"source": "digits", "classes": [5, 6, 7, 8, 9], "per_class": 10, "val_per_class": 40, "batch_size": 16}
    target = {"model": {"name": "cifar_resnet20", "weights": str(tmp_path / "source"), "bn_momentum": 0.9},
              "data": data, "jit_compile": False,
              "phases": [{"epochs": 3, "freeze": "all_but_head", "optimizer": {"name": "adamw", "learning_rate": 0.003},
                          "schedule": {"name": "cosine", "warmup_epochs": 1}, "weight_decay": 0.0001}]}
    head_only = rt.train(target, out=tmp_path / "head", verbose=0).metrics["final"]["val_accuracy"]

    backbone = keras.saving.load_model(tmp_path / "source" / "model.keras")
    pooled = keras.Model(backbone.inputs, backbone.get_layer("avg_pool").output)
    bundle = load_data(**data, seed=0)
    (x, y), (vx, vy) = [[np.concatenate([np.asarray(t) for t in part]) for part in zip(*ds)]
                        for ds in (bundle.train_unaugmented, bundle.val)]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    probe.fit(pooled.predict(x, verbose=0), y.argmax(-1))
    reference = probe.score(pooled.predict(vx, verbose=0), vy.argmax(-1))
    assert head_only >= reference - 0.03, (head_only, reference)
