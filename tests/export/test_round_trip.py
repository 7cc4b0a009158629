"""Round trips: every format reloads in a process that cannot import restransfer, and agrees."""

import json
import subprocess
import sys

import pytest

from restransfer.export.verify import child_sys_path

from .conftest import CLASS_NAMES

EXPECTED_CHECKS = {
    "saved_model": {("saved_model", "serving_default", 8), ("saved_model", "serving_default", 1),
                    ("saved_model", "serve_tensor", 8)},
    "keras": {("model.keras", "call", 8)},
    "tflite": {("model.tflite", "serve_tensor", 8), ("model.dynamic.tflite", "serve_tensor", 8)},
}


@pytest.mark.parametrize("fmt", ["saved_model", "keras", "tflite"])
def test_export_reloads_without_restransfer_and_matches(exports, fmt):
    result = exports[fmt]
    report = result.verification
    assert report.passed, str(report)
    assert {(c.artifact, c.signature, c.images) for c in report.checks} == EXPECTED_CHECKS[fmt]
    for check in report.checks:
        assert check.max_abs_diff <= check.tolerance
        assert check.top1_agree + check.top1_ties >= check.images
    float32 = [c for c in report.checks if c.tolerance == 1e-4]
    assert float32 and all(c.top1_agree == c.images for c in float32)
    manifest = json.loads((result.path / "export.json").read_text())
    assert manifest["class_names"] == CLASS_NAMES and manifest["image_size"] == [32, 32]
    assert result.path == result.path.parent.parent / "export" / fmt


def test_verification_process_really_cannot_import_restransfer():
    # Independently of verify's import hook: -I -S with only site-packages on sys.path hides the
    # editable install (a .pth file) and the checkout.
    code = (f"import sys, importlib.util; sys.path[:0] = {child_sys_path()!r}; "
            "print(importlib.util.find_spec('restransfer'), importlib.util.find_spec('tensorflow') is not None)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "True"]


def test_tflite_runs_on_litert_when_installed_else_on_tf_lite(exports, tmp_path, monkeypatch):
    from restransfer.export import verify

    try:
        import ai_edge_litert.interpreter  # noqa: F401

        expected = "ai_edge_litert"
    except ImportError:
        expected = "tf.lite"
    report = exports["tflite"].verification
    assert report.runtime == expected and f"interpreter {expected}" in str(report)
    # Without LiteRT (a package that fails to import shadows it) the same check runs on tf.lite.
    (tmp_path / "ai_edge_litert").mkdir()
    (tmp_path / "ai_edge_litert" / "__init__.py").write_text("raise ImportError('not installed here')\n")
    monkeypatch.setattr(verify, "child_sys_path", lambda: [str(tmp_path), *child_sys_path()])
    fallback = verify.verify_export(exports["tflite"].path)
    assert fallback.passed and fallback.runtime == "tf.lite", str(fallback)
    assert [c.max_abs_diff for c in fallback.checks] == pytest.approx([c.max_abs_diff for c in report.checks],
                                                                       abs=1e-6)


def _tamper(fmt, directory, kernel):
    """Negate the head's kernel inside the artifact of ``fmt``, leaving the manifest and samples alone."""
    import io
    import shutil
    import zipfile

    import h5py
    import numpy as np

    if fmt == "keras":
        with zipfile.ZipFile(directory / "model.keras") as source:
            items = {name: source.read(name) for name in source.namelist()}
        weights = io.BytesIO(items["model.weights.h5"])
        with h5py.File(weights, "r+") as h5:
            names = []
            h5.visit(names.append)
            (name,) = [n for n in names if isinstance(h5[n], h5py.Dataset) and h5[n].shape == kernel.shape]
            h5[name][...] = -h5[name][...]
        items["model.weights.h5"] = weights.getvalue()
        with zipfile.ZipFile(directory / "model.keras", "w") as target:
            for name, data in items.items():
                target.writestr(name, data)
    elif fmt == "tflite":
        data = (directory / "model.tflite").read_bytes()
        # The converter may store a dense kernel transposed (TFLite's FullyConnected is [out, in]).
        stored = next(k for k in (kernel, kernel.T) if data.count(np.ascontiguousarray(k, "<f4").tobytes()) == 1)
        (directory / "model.tflite").write_bytes(data.replace(np.ascontiguousarray(stored, "<f4").tobytes(),
                                                              np.ascontiguousarray(-stored, "<f4").tobytes()))
    else:
        # Bytes edited in place would fail the checkpoint's checksums; a re-saved SavedModel is valid.
        import tensorflow as tf

        loaded = tf.saved_model.load(str(directory))
        (variable,) = [v for v in loaded.variables if v.shape == kernel.shape and np.array_equal(v.numpy(), kernel)]
        variable.assign(-variable)
        shutil.rmtree(directory / "variables")
        (directory / "saved_model.pb").unlink()
        tf.saved_model.save(loaded, str(directory), signatures=dict(loaded.signatures))


TAMPERED = {"saved_model": {"saved_model"}, "keras": {"model.keras"}, "tflite": {"model.tflite"}}


@pytest.mark.parametrize("fmt", ["saved_model", "keras", "tflite"])
def test_verifier_fails_an_export_whose_artifact_computes_another_model(exports, trained_model, tmp_path, fmt):
    import shutil

    from restransfer.export.verify import verify_export

    tampered = tmp_path / fmt
    shutil.copytree(exports[fmt].path, tampered)
    _tamper(fmt, tampered, trained_model.get_layer("predictions").kernel.numpy())
    report = verify_export(tampered)
    assert not report.passed, str(report)
    failed = {c.artifact for c in report.checks if c.problems}
    assert failed == TAMPERED[fmt], str(report)
    for check in report.checks:
        if check.artifact in failed:
            assert check.max_abs_diff > 0.1 and check.problems[0].startswith("probabilities differ by up to")
    assert "FAILED" in str(report)
