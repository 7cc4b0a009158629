"""Checkpoints restore weights and optimizer state exactly; atomic writes never leave half a file."""

import json

import keras
import numpy as np
import pytest

from restransfer.training import checkpoint
from restransfer.training.optimizers import build_optimizer


def compiled_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), name="image")
    x = keras.layers.Dense(8, activation="relu", name="conv2_dense")(inputs)
    x = keras.layers.BatchNormalization(name="conv2_bn")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=build_optimizer("adamw", 0.01, weight_decay=0.01), loss="categorical_crossentropy")
    return model


def data():
    rng = np.random.default_rng(1)
    return rng.normal(size=(32, 6)).astype("float32"), np.eye(3, dtype="float32")[rng.integers(0, 3, 32)]


def test_restored_run_continues_exactly_like_the_uninterrupted_one(tmp_path):
    x, y = data()
    model = compiled_model()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    checkpoint.save_checkpoint(model, tmp_path, {"epoch": 1, "phase": 0})

    resumed = compiled_model(seed=5)           # other initial weights: all must come from the checkpoint
    state = checkpoint.load_state(tmp_path)
    checkpoint.restore_weights(resumed, tmp_path, state)
    checkpoint.restore_optimizer(resumed, tmp_path, state)
    assert int(resumed.optimizer.iterations) == 4
    for a, b in zip(model.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))

    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    resumed.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, resumed.weights):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-7)


def test_only_the_latest_checkpoint_is_kept_and_state_points_to_it(tmp_path):
    model = compiled_model()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    for epoch in (1, 2):
        checkpoint.save_checkpoint(model, tmp_path, {"epoch": epoch})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["last-epoch0002.optimizer.npz", "last-epoch0002.weights.h5", "state.json"]
    assert json.loads((tmp_path / "state.json").read_text())["checkpoint"] == "last-epoch0002"


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    checkpoint.write_json(target, {"ok": 1})

    def crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(target, crash)
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_leftover_temporary_files_are_removed_on_resume(tmp_path):
    checkpoint.write_json(tmp_path / "state.json", {"epoch": 3, "checkpoint": "last-epoch0003"})
    (tmp_path / ".tmp-abc.weights.h5").write_bytes(b"partial")
    assert checkpoint.load_state(tmp_path)["epoch"] == 3
    assert not list(tmp_path.glob(".tmp-*"))


def test_epoch_line_prints_one_line_per_epoch():
    import keras
    import numpy as np

    from restransfer.training.callbacks import EpochLine

    lines = []
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy", metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    x, y = np.ones((8, 3), "float32"), np.eye(2, dtype="float32")[[0, 1] * 4]
    model.fit(x, y, validation_data=(x, y), epochs=3, initial_epoch=1, verbose=0,
              callbacks=[EpochLine(5, "tune", write=lines.append)])
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[0].startswith("epoch 2/5 'tune': ") and lines[1].startswith("epoch 3/5 'tune': ")
    assert "| val_" in lines[0] and " accuracy " in lines[0] and lines[0].endswith(" s")
