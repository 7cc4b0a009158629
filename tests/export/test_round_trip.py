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
    code = ("import sys, importlib.util; sys.path[:0] = %r; "
            "print(importlib.util.find_spec('restransfer'), importlib.util.find_spec('tensorflow') is not None)"
            % child_sys_path())
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
