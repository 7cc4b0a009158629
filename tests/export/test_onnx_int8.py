"""ONNX and full-integer TFLite exports: fresh-process verification, recorded facts, tampering."""

import json

import numpy as np
import pytest

from restransfer.errors import ConfigError
from restransfer.export import export_model, verify_export
from restransfer.export.artifact import ExportError
from tests.export.conftest import CLASS_NAMES, colour_images


def test_onnx_matches_keras_in_onnx_runtime(new_exports, trained_model):
    import onnxruntime

    result = new_exports["onnx"]
    assert result.verification.passed, str(result.verification)
    assert result.verification.runtime.startswith("onnxruntime")
    manifest = json.loads((result.path / "export.json").read_text())
    assert manifest["onnx"] == {"opset": 17, "inputs": ["images"], "outputs": ["probabilities"]}
    assert manifest["precision"] == {"model.onnx": "float32"}
    # The graph takes RGB 0..255 NHWC floats, as model.keras does, and returns probabilities.
    images, _ = colour_images(5, seed=7)
    session = onnxruntime.InferenceSession(str(result.path / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(["probabilities"], {"images": images})[0]
    np.testing.assert_allclose(probs, trained_model(images, training=False).numpy(), atol=1e-4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_int8_tflite_is_full_integer_and_verifies(new_exports):
    from ai_edge_litert.interpreter import Interpreter

    result = new_exports["int8"]
    assert result.verification.passed, str(result.verification)
    manifest = json.loads((result.path / "export.json").read_text())
    assert manifest["precision"]["model.int8.tflite"] == "int8"
    assert manifest["int8"]["representative_images"] == 32
    interpreter = Interpreter(model_path=str(result.path / "model.int8.tflite"))
    runner = interpreter.get_signature_runner("serve_tensor")
    assert runner.get_input_details()["images"]["dtype"] == np.uint8
    tensor_types = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert "int8" in tensor_types
    # Smaller than the float32 model: weights stored in one byte.
    assert result.files["model.int8.tflite"] < result.files["model.tflite"] / 2


def test_tampered_onnx_fails_verification(new_exports, tmp_path):
    import shutil

    import onnx

    copy = tmp_path / "onnx"
    shutil.copytree(new_exports["onnx"].path, copy)
    graph = onnx.load(str(copy / "model.onnx"))
    # The classifier's weights (last axis: one per class) rolled: every class's score moves.
    head = [t for t in graph.graph.initializer if onnx.numpy_helper.to_array(t).ndim == 2
            and onnx.numpy_helper.to_array(t).shape[-1] == len(CLASS_NAMES)]
    assert head
    for weights in head:
        array = onnx.numpy_helper.to_array(weights)
        weights.CopyFrom(onnx.numpy_helper.from_array(np.roll(array, 1, axis=-1), weights.name))
    onnx.save(graph, str(copy / "model.onnx"))
    report = verify_export(copy)
    assert not report.passed
    assert "probabilities differ" in str(report)


def test_tampered_int8_fails_verification(new_exports, tmp_path):
    import shutil

    copy = tmp_path / "int8"
    shutil.copytree(new_exports["int8"].path, copy)
    float_model = (copy / "model.tflite").read_bytes()
    # The int8 file replaced by another model's: a wrong-shaped or wrong-valued output.
    (copy / "model.int8.tflite").write_bytes(float_model)
    np.savez(copy / "samples" / "reference.npz",
             probabilities=np.roll(np.load(copy / "samples" / "reference.npz")["probabilities"], 1, axis=-1))
    report = verify_export(copy)
    assert not report.passed


def test_int8_needs_representative_images(trained_model, tmp_path):
    with pytest.raises(ExportError, match="representative images"):
        export_model(trained_model, tmp_path / "x", "tflite", CLASS_NAMES, quantize="int8")
    assert not (tmp_path / "x").exists()


def test_int8_only_for_tflite(trained_model, tmp_path):
    with pytest.raises(ConfigError, match="TFLite only"):
        export_model(trained_model, tmp_path / "x", "onnx", CLASS_NAMES, quantize="int8")


def test_export_json_scores_each_artifact_on_validation_images(new_exports, trained_model):
    images, labels = colour_images(30, seed=2)
    keras_probs = trained_model(images, training=False).numpy()
    for result in new_exports.values():
        scores = json.loads((result.path / "export.json").read_text())["scores"]
        assert set(scores) == {name for name in result.files if name.startswith("model.")}
        for sc in scores.values():
            assert sc["images"] == 30
            assert sc["keras_accuracy"] == pytest.approx(np.mean(keras_probs.argmax(-1) == labels))
            assert 0 <= sc["accuracy"] <= 1 and 0 <= sc["top1_agreement"] <= 1
        # `export verify` prints the recorded scores.
        assert "validation images: accuracy" in str(verify_export(result.path))
    onnx_score = json.loads((new_exports["onnx"].path / "export.json").read_text())["scores"]["model.onnx"]
    assert onnx_score["top1_agreement"] == 1.0 and onnx_score["mean_abs_prob_diff"] < 1e-5


def test_score_artifact_numbers_and_loud_loss():
    from restransfer.export.verify import render_scores, score_artifact

    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
    quantised = np.array([[0.8, 0.2], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]], np.float32)
    sc = score_artifact(quantised, np.array([0, 1, 0, 1]), reference)
    assert sc["keras_accuracy"] == 1.0 and sc["accuracy"] == 0.75 and sc["top1_agreement"] == 0.75
    assert sc["mean_abs_prob_diff"] == pytest.approx((0.1 * 2 + 0.2 * 2) / 8)
    assert not sc["within_bound"]
    assert any(line.startswith("  WARNING: model.int8.tflite loses 0.250 accuracy")
               for line in render_scores({"model.int8.tflite": sc}))
