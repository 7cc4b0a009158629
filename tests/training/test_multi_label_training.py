"""The multi-label head trains: sigmoid outputs, binary cross-entropy, per-label probe, mAP and exact match."""

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

from restransfer.recipe.engine import build_model, compile_phase
from restransfer.recipe.plan import load_plan
from restransfer.training.linear_probe import fit_sigmoid_probe
from restransfer.training.task import exact_match, make_metrics


@pytest.fixture
def plan(tmp_path):
    (tmp_path / "t.csv").write_text("path,labels\n0.jpg,a;b\n")
    return load_plan({"task": "multi_label", "model": {"name": "cifar_resnet20"},
                      "data": {"source": "csv", "path": str(tmp_path / "t.csv"), "validation_split": 0.5,
                               "image_size": 16, "batch_size": 4},
                      "phases": [{"epochs": 1, "label_smoothing": 0.1}]})


def test_the_decided_head_loss_and_metrics_train_a_tiny_model(plan):
    keras.utils.set_random_seed(0)
    model = build_model(plan, 3)
    assert model.get_layer("head_probabilities").get_config()["activation"] == "sigmoid"
    assert model.get_layer("head_probabilities").dtype_policy.name == "float32"
    phase = plan.phases[0]
    compile_phase(model, phase, frozen=(), steps_per_epoch=2, num_classes=3, jit_compile=False,
                  loss=plan.decisions.loss.value, metrics=plan.decisions.metrics.value)
    assert model.loss.get_config()["label_smoothing"] == 0.1
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    y = (rng.random((8, 3)) < 0.5).astype("float32")
    history = model.fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), verbose=0).history
    assert set(history) >= {"loss", "map", "exact_match", "val_map", "val_exact_match", "val_loss"}
    from restransfer.training.head_init import init_head_from_probe

    assert init_head_from_probe(model, (x, y), multi_label=True).images == 8
    probabilities = model.predict(x, verbose=0)
    assert probabilities.shape == (8, 3) and not np.allclose(probabilities.sum(-1), 1.0)


def test_map_and_exact_match_agree_with_scikit_learn():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 4)) < 0.4).astype("float32")
    p = np.clip(y * 0.3 + rng.random((200, 4)) * 0.7, 0, 1).astype("float32")
    average_precision, exact = make_metrics(("map", "exact_match"), 4)
    average_precision.update_state(y, p)
    exact.update_state(y, p)
    reference = average_precision_score(y, p, average="macro")
    assert float(average_precision.result()) == pytest.approx(reference, abs=0.02)
    assert float(exact.result()) == pytest.approx(np.mean(np.all((p > 0.5) == (y > 0.5), axis=1)))
    assert np.asarray(exact_match(y[:2], p[:2])).shape == (2,)


def test_the_probe_is_one_logistic_regression_per_label():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(60, 5)) * [1, 2, 3, 4, 5] + 7
    labels = np.stack([features[:, 0] > 7, features[:, 1] + features[:, 2] > 14, np.ones(60, bool)], 1).astype(int)
    kernel, bias = fit_sigmoid_probe(features, labels)
    scaled = StandardScaler().fit(features).transform(features)
    for j in range(2):
        reference = LogisticRegression(max_iter=5000).fit(scaled, labels[:, j]).predict_proba(scaled)[:, 1]
        mine = 1 / (1 + np.exp(-(features @ kernel[:, j] + bias[j])))
        np.testing.assert_allclose(mine, reference, atol=1e-4)
    assert np.all(kernel[:, 2] == 0) and 1 / (1 + np.exp(-bias[2])) == pytest.approx(0.999)
