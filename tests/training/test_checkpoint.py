"""Checkpoints restore weights and optimizer state exactly; atomic writes never leave half a file."""

import json
import os
import stat

import keras
import numpy as np
import pytest

from restransfer import checkpoint_files, files
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
    state = checkpoint_files.load_state(tmp_path)
    checkpoint.restore_weights(resumed, tmp_path, state)
    checkpoint.restore_optimizer(resumed, tmp_path, state)
    assert int(resumed.optimizer.iterations) == 4
    for a, b in zip(model.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))

    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    resumed.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, resumed.weights):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-7)


def test_the_two_newest_checkpoints_are_kept_and_state_points_to_the_newest(tmp_path):
    model = compiled_model()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    for epoch in (1, 2, 3):
        checkpoint.save_checkpoint(model, tmp_path, {"epoch": epoch})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"last-epoch000{e}.{kind}" for e in (2, 3)
                     for kind in ("optimizer.npz", "state.json", "weights.npz")] + ["state.json"]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["checkpoint"] == "last-epoch0003"
    assert set(state["files"]) == {"last-epoch0003.weights.npz", "last-epoch0003.optimizer.npz"}


def test_epoch_weights_hold_every_variable_and_refuse_another_model(tmp_path):
    from restransfer.errors import TrainingError

    model = compiled_model()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)  # moves the BatchNorm statistics too
    checkpoint.save_weights(model, tmp_path / "a.weights.npz")
    other = compiled_model(seed=4)
    checkpoint.load_weights(other, tmp_path / "a.weights.npz")
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=a.path)
    inputs = keras.Input((6,), name="image")
    wider = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(keras.layers.Dense(9, name="conv2_dense")(inputs)))
    with pytest.raises(TrainingError, match=r"a.weights.npz holds the weights of another model .*conv2_bn/gamma"):
        checkpoint.load_weights(wider, tmp_path / "a.weights.npz")


def test_a_checkpoint_an_earlier_version_wrote_as_weights_h5_still_resumes(tmp_path):
    model = compiled_model()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    checkpoint.save_checkpoint(model, tmp_path, {"epoch": 1})
    state = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / "last-epoch0001.weights.npz").unlink()
    model.save_weights(tmp_path / "last-epoch0001.weights.h5")
    state["files"] = {"last-epoch0001.weights.h5": checkpoint_files.fingerprint(tmp_path / "last-epoch0001.weights.h5"),
                      "last-epoch0001.optimizer.npz": state["files"]["last-epoch0001.optimizer.npz"]}
    (tmp_path / "state.json").write_text(json.dumps(state))
    found, notes = checkpoint_files.find_resumable(tmp_path)
    assert found["epoch"] == 1 and notes == []
    resumed = compiled_model(seed=5)
    checkpoint.restore_weights(resumed, tmp_path, found)
    for a, b in zip(model.weights, resumed.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=a.path)


def test_the_kept_epoch_round_trips_and_an_earlier_versions_h5_still_loads(tmp_path):
    model = compiled_model()
    model.fit(*data(), epochs=1, verbose=0)
    checkpoint.save_best(model, tmp_path)
    restored = compiled_model(seed=5)
    checkpoint.restore_best(restored, tmp_path)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=a.path)
    (tmp_path / checkpoint_files.BEST).unlink()
    model.save_weights(tmp_path / checkpoint_files.LEGACY_BEST)
    legacy = compiled_model(seed=6)
    checkpoint.restore_best(legacy, tmp_path)
    for a, b in zip(model.weights, legacy.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=a.path)


_SAVE_UNDER_A_FILE_SIZE_LIMIT = """
import resource, signal, sys
import keras
from restransfer.training import checkpoint
inputs = keras.Input((64,))
model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Dense(4)(inputs)))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
try:
    checkpoint.save_best(model, sys.argv[1])
except OSError as error:
    print("OSError", error.errno)
"""


def test_a_failed_write_of_the_kept_epoch_raises_and_the_process_lives(tmp_path):
    """A full disk is an OSError the run reports, never a native crash (issue 27).

    A file-size limit stands in for the full disk (no root needed). Keras' own ``save_weights``
    (h5py) returns as if it had succeeded and the process then dies with SIGSEGV when h5py frees
    the file; the kept epoch is therefore written with NumPy's writer.
    """
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _SAVE_UNDER_A_FILE_SIZE_LIMIT, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "OSError 27"  # EFBIG: the file-size limit
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def saved_epochs(tmp_path, epochs=(1, 2)):
    model = compiled_model()
    x, y = data()
    for epoch in epochs:
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        checkpoint.save_checkpoint(model, tmp_path, {"epoch": epoch, "phase": 0})
    return model


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damaged", ["weights.npz", "optimizer.npz"])
def test_a_truncated_last_checkpoint_falls_back_to_the_previous_epoch(tmp_path, damaged):
    saved_epochs(tmp_path)
    truncate(tmp_path / f"last-epoch0002.{damaged}")
    state, notes = checkpoint_files.find_resumable(tmp_path)
    assert state["epoch"] == 1 and state["checkpoint"] == "last-epoch0001"
    assert f"last-epoch0002.{damaged}" in notes[0] and "bytes" in notes[0]
    assert "epoch 1" in notes[-1]
    resumed = compiled_model(seed=3)             # the fallback really restores
    checkpoint.restore_weights(resumed, tmp_path, state)
    checkpoint.restore_optimizer(resumed, tmp_path, state)
    assert int(resumed.optimizer.iterations) == 4


def test_a_truncated_state_json_falls_back_to_the_epochs_own_state(tmp_path):
    saved_epochs(tmp_path)
    truncate(tmp_path / "state.json", 0.3)
    state, notes = checkpoint_files.find_resumable(tmp_path)
    assert state["epoch"] == 2
    assert "state.json is damaged" in notes[0]


def test_a_changed_byte_is_found_by_the_hash(tmp_path):
    saved_epochs(tmp_path)
    path = tmp_path / "last-epoch0002.weights.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    state, notes = checkpoint_files.find_resumable(tmp_path)
    assert state["epoch"] == 1 and "SHA-256" in notes[0]


def test_checkpoints_without_fingerprints_are_checked_by_opening_them(tmp_path):
    saved_epochs(tmp_path)
    for path in tmp_path.glob("*state.json"):    # as written by an older restransfer
        state = json.loads(path.read_text())
        del state["files"]
        path.write_text(json.dumps(state))
    truncate(tmp_path / "last-epoch0002.weights.npz")
    state, notes = checkpoint_files.find_resumable(tmp_path)
    assert state["epoch"] == 1 and "cannot be read" in notes[0]


def test_nothing_intact_starts_again_and_says_so(tmp_path):
    saved_epochs(tmp_path)
    for path in tmp_path.glob("*.weights.npz"):
        truncate(path)
    state, notes = checkpoint_files.find_resumable(tmp_path)
    assert state is None
    assert "starts again at epoch 1" in notes[-1]
    assert checkpoint_files.load_state(tmp_path) is None
    assert checkpoint_files.find_resumable(tmp_path / "missing") == (None, [])


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    files.write_json(target, {"ok": 1})

    def crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, crash)
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_leftover_temporary_files_are_removed_on_resume(tmp_path):
    saved_epochs(tmp_path, epochs=(3,))
    (tmp_path / ".tmp-abc.weights.npz").write_bytes(b"partial")
    assert checkpoint_files.load_state(tmp_path)["epoch"] == 3
    assert not list(tmp_path.glob(".tmp-*"))


def test_temporary_files_are_removed_when_no_epoch_finished(tmp_path):
    (tmp_path / ".tmp-abc.weights.npz").write_bytes(b"partial")   # killed while saving epoch 1
    assert checkpoint_files.load_state(tmp_path) is None
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_files_get_the_umask_modes_not_mkstemps_0600(tmp_path, mask):
    old = os.umask(mask)
    try:
        files.write_json(tmp_path / "run.json", {})
        plain = tmp_path / "plain"
        plain.write_text("")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "run.json").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~mask


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
