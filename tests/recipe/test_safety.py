"""Nothing lost, nothing hangs (issue 15): kills, damaged files, hostile recipes and run folders.

Each test reproduces one case of the red-team report through the command line or ``rt.train``
and asserts the outcome a user sees: the run resumes or is refused with a message, no
traceback, nothing of theirs deleted.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

import restransfer as rt
from restransfer.cli import main
from tests.data.conftest import image_bytes, make_folder

pytestmark = pytest.mark.tensorflow

TINY = {
    "model": {"name": "cifar_resnet20"},
    "data": {"source": "digits", "classes": [0, 1, 2], "per_class": 6, "val_per_class": 4, "batch_size": 6},
    "phases": [{"name": "all", "epochs": 3, "optimizer": {"name": "adamw", "learning_rate": 0.003}}],
    "jit_compile": False,
}


def recipe_file(tmp_path, recipe=None, name="r.yaml", **changes):
    recipe = json.loads(json.dumps(recipe or TINY))
    for key, value in changes.items():
        recipe[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_cli(args, capsys):
    """``restransfer ARGS`` in process: (exit status, stdout, stderr); a traceback fails the test."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def train_command(recipe, out):
    return [sys.executable, "-m", "restransfer", "train", str(recipe), "--out", str(out)]


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished TINY run folder (3 epochs)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    rt.train(TINY, out=folder, verbose=0)
    return folder


# ---------------------------------------------------------------- 1: kill -9 during the recipe's export
@pytest.mark.slow
def test_kill_9_during_the_recipes_export_then_the_same_command_makes_it(tmp_path):
    from tests.export.test_crash import alive, children

    recipe = recipe_file(tmp_path, export=["saved_model"], phases=[{"epochs": 1}])
    out = tmp_path / "run"
    first = subprocess.Popen(train_command(recipe, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=ENV)
    deadline = time.time() + 500
    verifier = None
    while verifier is None:
        assert first.poll() is None and time.time() < deadline, first.stdout.read()
        verifier = next((pid for pid, cmd in children(first.pid) if "verify_export.py" in cmd), None)
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    deadline = time.time() + 20
    while alive(verifier):
        assert time.time() < deadline, "the verifier was left running, orphaned"
        time.sleep(0.1)
    again = subprocess.run(train_command(recipe, out), capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (out / "export" / "saved_model" / "saved_model.pb").is_file()
    assert sorted(p.name for p in (out / "export").iterdir()) == ["MODEL_CARD.md", "saved_model"]
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


# ---------------------------------------------------------------- 2, 4: damaged checkpoints, temporaries
def test_a_truncated_checkpoint_falls_back_to_the_previous_epoch_and_says_so(tmp_path, monkeypatch):
    from restransfer.training import callbacks

    original = callbacks.EpochRecorder.on_epoch_end

    def stop_after_epoch_2(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch + 1 == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.EpochRecorder, "on_epoch_end", stop_after_epoch_2)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        rt.train(TINY, out=out, verbose=0)
    monkeypatch.setattr(callbacks.EpochRecorder, "on_epoch_end", original)
    weights = out / "checkpoints" / "last-epoch0002.weights.npz"
    weights.write_bytes(weights.read_bytes()[:1000])             # truncated by a full disk, a bad copy
    (out / ".tmp-x1.keras").write_bytes(b"half a model")        # what kills leave behind
    (out / "checkpoints" / ".tmp-x2.weights.npz").write_bytes(b"half")
    run = rt.train(TINY, out=out, verbose=0)
    assert [row["epoch"] for row in run.history] == [1, 2, 3]
    log = (out / "train.log").read_text()
    assert "last-epoch0002.weights.npz has 1,000 bytes" in log
    assert "Resuming" in log and "after epoch 1" in log
    assert not list(out.glob(".tmp-*")) and not list((out / "checkpoints").glob(".tmp-*"))


# ---------------------------------------------------------------- 3: the run-folder lock
@pytest.mark.slow
def test_a_second_train_into_a_live_run_folder_is_refused_and_a_killed_ones_lock_does_not_block(tmp_path):
    recipe = recipe_file(tmp_path, phases=[{"epochs": 40, "optimizer": {"name": "sgd", "learning_rate": 0.01}}])
    out = tmp_path / "run"
    first = subprocess.Popen(train_command(recipe, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=ENV)
    deadline = time.time() + 400
    while not (out / "checkpoints" / "state.json").exists():
        assert first.poll() is None and time.time() < deadline, first.stdout.read()
        time.sleep(0.2)
    second = subprocess.run(train_command(recipe, out), capture_output=True, text=True, env=ENV, timeout=300)
    assert first.poll() is None, "the first run ended before the second was refused"
    assert second.returncode != 0 and "Traceback" not in second.stderr
    assert "in use by process" in second.stderr and str(first.pid) in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait()
    # The kernel dropped the dead process's lock: the same command resumes and trains on.
    epoch = json.loads((out / "checkpoints" / "state.json").read_text())["epoch"]
    resumed = subprocess.Popen(train_command(recipe, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=ENV)
    deadline = time.time() + 400
    while json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] <= epoch:
        assert resumed.poll() is None and time.time() < deadline, resumed.stdout.read()
        time.sleep(0.2)
    resumed.send_signal(signal.SIGKILL)
    resumed.wait()
    assert f"after epoch {epoch}" in (out / "train.log").read_text()


# ---------------------------------------------------------------- 5: --force deletes only what runs write
def test_force_keeps_the_users_files_in_logs_and_export(finished, tmp_path, capsys):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    (folder / "logs" / "my_notes.txt").write_text("mine")
    (folder / "export").mkdir(exist_ok=True)
    (folder / "export" / "deploy.sh").write_text("mine")
    code, _, err = run_cli(["train", recipe_file(tmp_path), "--out", folder, "--force"], capsys)
    assert code != 0
    assert "my_notes.txt" in err and "deploy.sh" in err
    assert (folder / "logs" / "my_notes.txt").read_text() == "mine"
    assert (folder / "export" / "deploy.sh").read_text() == "mine"
    assert (folder / "model.keras").is_file()                   # nothing was deleted


# ---------------------------------------------------------------- 6: images dropped while training
def test_images_unreadable_after_the_check_are_counted_logged_and_recorded(tmp_path, monkeypatch):
    import restransfer.data as data_module

    root = make_folder(tmp_path / "d", {"a": 6, "b": 6}, size=(36, 36))
    recipe = {**TINY, "data": {"source": "folder", "path": str(root), "validation_split": 0.34,
                               "image_size": 32, "batch_size": 4, "cache": "none"}}
    real = data_module.load_data
    victims = []

    def load_then_break(**kwargs):
        bundle = real(**kwargs)
        victims.append(sorted((root / "b").iterdir())[0])
        victims[0].write_bytes(b"broken after the check")
        return bundle

    monkeypatch.setattr(data_module, "load_data", load_then_break)
    run = rt.train(recipe, out=tmp_path / "run", verbose=0)
    final = run.metrics["final"]
    evaluated = sum(sum(row) for row in run.metrics["confusion_matrix"])
    assert final["num_val"] == evaluated
    dropped = json.loads((tmp_path / "run" / "data_dropped.json").read_text())
    assert sum(dropped["dropped"].values()) >= 1
    assert "could not be read" in (tmp_path / "run" / "train.log").read_text()


# ---------------------------------------------------------------- 7, 8, 12: validate as strict as train
@pytest.mark.parametrize("text, needle", [
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     "g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n", "alias bomb"),
    (b"model: {name: r\xe9snet18}\n", "not UTF-8"),
    ("model: " + "[" * 5000, "levels"),
    ("model: {name: cifar_resnet20}\ndata: {source: digits, batch_size: 18446744073709551616}\n",
     "data.batch_size"),
    ("model: {name: cifar_resnet20}\nseed: " + "1" * 5000 + "\n", "5000 digits"),
    ("model: {name: cifar_resnet20}\nmodel: {name: resnet18}\n", "appears twice"),
])
def test_hostile_recipe_bytes_get_one_paragraph_and_no_hang(tmp_path, capsys, text, needle):
    path = tmp_path / "r.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    start = time.perf_counter()
    code, _, err = run_cli(["validate", path], capsys)
    assert time.perf_counter() - start < 30
    assert code == 2 and needle in err and str(path) in err


@pytest.mark.parametrize("change, needle", [
    ({"model": {"name": "resnet18"}, "data": {**TINY["data"], "image_size": 16}}, "data.image_size"),
    ({"model": {"name": "cifar_resnet20", "weights": "/etc/passwd"}}, "model.weights"),
    ({"data": {**TINY["data"], "per_class": 500}}, "per_class"),
    ({"phases": [{"epochs": True}]}, "phases[0].epochs"),
    ({"phases": [{"epochs": 1, "optimizer": {"name": "sgd", "learning_rate": "0.1"}}]}, "learning_rate"),
    ({"phases": [{"epochs": 1, "schedule": {"warmup_epochs": 3}}]}, "warmup_epochs"),
])
def test_validate_refuses_what_train_would_refuse(tmp_path, capsys, change, needle):
    code, _, err = run_cli(["validate", recipe_file(tmp_path, **change)], capsys)
    assert code == 2 and needle in err, err


# ---------------------------------------------------------------- 9: rich markup in user strings
def test_markup_in_phase_names_paths_and_folders_is_printed_as_text(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # table cells on one line each
    root = make_folder(tmp_path / "[/red]x", {"[red]a": 3, "b": 3}, size=(36, 36))
    recipe = {**TINY, "phases": [{"name": "[/oops]", "epochs": 1}],
              "data": {"source": "folder", "path": str(root), "validation_split": 0.34, "image_size": 32,
                       "batch_size": 4}}
    path = recipe_file(tmp_path, recipe, name="[bold]r.yaml")
    code, out, _ = run_cli(["validate", path], capsys)
    assert code == 0 and "[/oops]" in out and "[bold]r.yaml" in out
    code, out, _ = run_cli(["train", path, "--out", tmp_path / "run"], capsys)
    assert code == 0 and "[/oops]" in out
    image = tmp_path / "[/i].png"
    image.write_bytes(image_bytes("PNG", size=(32, 32)))
    code, out, _ = run_cli(["predict", tmp_path / "run", image], capsys)
    assert code == 0 and "[/i].png" in out
    code, out, _ = run_cli(["evaluate", tmp_path / "run"], capsys)
    assert code == 0 and "[red]a" in out


# ---------------------------------------------------------------- 11: damaged run folders
def damaged_copy(finished, tmp_path, damage):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    damage(folder)
    return folder


def lambda_model(folder):
    import keras

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Lambda(lambda x: x[:, 0, 0, :])(inputs)
    keras.Model(inputs, outputs).save(folder / "model.keras")


DAMAGE = {
    "lambda layer": (lambda_model, "safe mode"),
    "short class_names.json": (lambda f: (f / "class_names.json").write_text('["0", "1"]'), "class_names.json"),
    "edited run.json": (lambda f: (f / "run.json").write_text(json.dumps(
        {**json.loads((f / "run.json").read_text()), "image_size": "big"})), "run.json"),
    "python tag in recipe.yaml": (lambda f: (f / "recipe.yaml").write_text(
        "model: !!python/object/apply:os.system ['echo pwned']\n"), "recipe.yaml"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_folders_get_a_message_in_predict_evaluate_and_export(finished, tmp_path, capsys, damage):
    make, needle = DAMAGE[damage]
    folder = damaged_copy(finished, tmp_path, make)
    image = tmp_path / "x.png"
    image.write_bytes(image_bytes("PNG", size=(32, 32)))
    for args in (["predict", folder, image], ["evaluate", folder],
                 ["export", folder, "--format", "keras", "--no-verify"]):
        code, _, err = run_cli(args, capsys)
        if damage == "python tag in recipe.yaml" and args[0] in ("predict", "export"):
            assert "pwned" not in err  # they do not read the recipe; nothing ran either way
            continue
        assert code != 0, (damage, args)
        assert needle in err, (damage, args, err)


def test_out_pointing_at_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    code, _, err = run_cli(["train", recipe_file(tmp_path), "--out", target], capsys)
    assert code != 0 and "file.txt" in err and target.read_text() == "mine"


# ---------------------------------------------------------------- 13: evaluate where the data moved
def test_evaluate_with_data_works_when_the_recipes_data_and_weights_moved(tmp_path, capsys):
    root = make_folder(tmp_path / "d", {"a": 4, "b": 4}, size=(36, 36))
    source = tmp_path / "source"
    rt.train(TINY, out=source, verbose=0, overrides=["phases[0].epochs=1"])
    recipe = {**TINY, "model": {"name": "cifar_resnet20", "weights": str(source)},
              "phases": [{"epochs": 1}],
              "data": {"source": "folder", "path": str(root), "validation_split": 0.5, "image_size": 32,
                       "batch_size": 4}}
    rt.train(recipe, out=tmp_path / "run", verbose=0)
    moved = tmp_path / "moved"
    root.rename(moved)
    import shutil

    shutil.rmtree(source)
    code, out, err = run_cli(["evaluate", tmp_path / "run", "--data", moved], capsys)
    assert code == 0, err
    assert "8 images" in out
