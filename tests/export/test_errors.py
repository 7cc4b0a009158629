"""Bad export paths, bad run folders and failed exports: clear errors, nothing overwritten or left."""

import json

import keras
import pytest

from restransfer import export_run
from restransfer.errors import ConfigError, DataError
from restransfer.export import ExportError, export_model

from .conftest import CLASS_NAMES


def test_non_empty_target_is_refused_and_kept(run_dir, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists and is not empty; nothing was overwritten"):
        export_run(run_dir, "saved_model", out=target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"] and (target / "keep.txt").read_text() == "mine"


def test_target_that_is_a_file_is_refused(run_dir, tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    with pytest.raises(ExportError, match="is a file"):
        export_run(run_dir, "tflite", out=target)
    assert target.read_bytes() == b"old"


def test_unwritable_location_is_named(trained_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="Cannot create the export directory"):
        export_model(trained_model, blocker / "sub" / "out", "keras", CLASS_NAMES, verify=False)


def test_not_a_run_folder_and_bad_options(tmp_path, run_dir):
    with pytest.raises(ExportError, match="does not exist"):
        export_run(tmp_path / "nope", "keras")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "run.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(ExportError, match=r"has no model.keras \(status: running\)"):
        export_run(tmp_path / "half", "keras")
    with pytest.raises(ConfigError, match="Unknown export format 'coreml'"):
        export_run(run_dir, "coreml")
    with pytest.raises(ConfigError, match="Quantisation applies to TFLite only"):
        export_run(run_dir, "saved_model", quantize="float16")


def test_failed_export_leaves_nothing_behind(trained_model, tmp_path):
    not_an_image = tmp_path / "sample.png"
    not_an_image.write_text("text")
    out = tmp_path / "exports" / "keras"
    with pytest.raises(DataError, match=f"Image '{not_an_image}' cannot be decoded"):
        export_model(trained_model, out, "keras", CLASS_NAMES, samples=[not_an_image])
    assert not out.exists()
    # A failure after writing started (a layer the portable .keras cannot express) removes the
    # partial export too.

    class Doubling(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(Doubling()(inputs)))
    with pytest.raises(ExportError, match=r"layers without a built-in Keras equivalent: \['Doubling'\]"):
        export_model(keras.Model(inputs, outputs), out, "keras", ["a", "b"])
    assert not out.exists() and list(out.parent.iterdir()) == []
