"""Verify an export on reload, in a fresh Python process that cannot import restransfer.

The exported artifact is loaded by a small script run as ``python -I -S`` with only the
environment's site-packages on ``sys.path`` (no .pth files, so no editable install of the
project) and an import hook that refuses ``restransfer``: what passes here works for a user who
has TensorFlow (or Keras) and the exported files, nothing else. The script feeds the stored
sample images (or given ones), and its outputs are compared with the Keras model's:
probabilities within ``TOLERANCES`` and the same top-1 class wherever the Keras model's top two
classes are further apart than twice the tolerance (closer ones are ties at that precision). A
multi-label SavedModel's ``labels`` must name the labels at or above the export's thresholds
wherever no probability is within the tolerance of its threshold.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from restransfer.errors import DataError
from restransfer.export.artifact import TOLERANCES, ExportError, call_model, read_manifest, read_samples
from restransfer.files import FolderLock

FRESH_PROCESS_TIMEOUT_S = 600
INT8_STEP = 2 / 256
# An export that scores more than this below the Keras model on the validation images is flagged.
ACCURACY_LOSS_BOUND = 0.02
SCRATCH_PREFIX = "restransfer-verify-"
# A scratch folder without a lock file (written by older versions) is stale after this long.
UNLOCKED_SCRATCH_AGE_S = 3600

_SCRIPT = r'''
import json, os, sys, threading, time

def _stop_when_orphaned(parent):
    # kill -9 of the exporting process gives it no chance to stop us: notice and stop too.
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(70)

threading.Thread(target=_stop_when_orphaned, args=(int(sys.argv[2]),), daemon=True).start()

class _RefuseRestransfer:
    def find_spec(self, name, path=None, target=None):
        if name == "restransfer" or name.startswith("restransfer."):
            raise ImportError("restransfer must not be importable while verifying an export")
        return None

sys.meta_path.insert(0, _RefuseRestransfer())
spec = json.load(open(sys.argv[1]))
sys.path[:0] = spec["sys_path"]

import warnings
warnings.filterwarnings("ignore")
import numpy as np

images = np.load(spec["tensor_inputs"], allow_pickle=False)["images"]
contents = [open(path, "rb").read() for path in spec["image_files"]]
outputs, signatures, runtime = {}, {}, None
# Validation images to score the export on (export.json's "scores"), run in chunks.
score_images = np.load(spec["score_inputs"], allow_pickle=False)["images"] if spec.get("score_inputs") else None

def score(artifact, predict):
    if score_images is not None:
        chunks = [np.asarray(predict(score_images[i:i + 64])) for i in range(0, len(score_images), 64)]
        outputs[f"{artifact}|score|score|probabilities"] = np.concatenate(chunks)

def spec_of(tensor_spec):
    if tensor_spec.shape.rank is None:
        return [tensor_spec.dtype.name, None]
    return [tensor_spec.dtype.name, [-1 if d is None else d for d in tensor_spec.shape.as_list()]]

def keep(artifact, signature, batch, result):
    for key, value in result.items():
        value = np.asarray(value)
        if value.dtype == object or value.dtype.kind == "S":
            value = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in value.reshape(-1)])
        outputs[f"{artifact}|{signature}|{batch}|{key}"] = value

if spec["format"] == "saved_model":
    import tensorflow as tf
    loaded = tf.saved_model.load(spec["directory"])
    signatures["saved_model"] = {
        name: {"inputs": {k: spec_of(v) for k, v in fn.structured_input_signature[1].items()},
               "outputs": {k: spec_of(v) for k, v in fn.structured_outputs.items()}}
        for name, fn in loaded.signatures.items()}
    serving = loaded.signatures["serving_default"]
    keep("saved_model", "serving_default", "all", serving(image_bytes=tf.constant(contents)))
    keep("saved_model", "serving_default", "1", serving(image_bytes=tf.constant(contents[:1])))
    keep("saved_model", "serve_tensor", "all", loaded.signatures["serve_tensor"](images=tf.constant(images)))
    score("saved_model", lambda x: loaded.signatures["serve_tensor"](images=tf.constant(x))["probabilities"])
elif spec["format"] == "keras":
    import keras
    model = keras.saving.load_model(spec["directory"] + "/model.keras", safe_mode=True)
    signatures["model.keras"] = {"call": {
        "inputs": {t.name: [t.dtype, [-1 if d is None else d for d in t.shape]] for t in model.inputs},
        "outputs": {"probabilities": [model.outputs[0].dtype, [-1 if d is None else d for d in model.outputs[0].shape]]}}}
    keep("model.keras", "call", "all", {"probabilities": keras.ops.convert_to_numpy(model(images, training=False))})
    score("model.keras", lambda x: keras.ops.convert_to_numpy(model(x, training=False)))
elif spec["format"] == "onnx":
    import onnxruntime
    runtime = "onnxruntime " + onnxruntime.__version__
    for name in spec["artifacts"]:
        session = onnxruntime.InferenceSession(spec["directory"] + "/" + name, providers=["CPUExecutionProvider"])
        signatures[name] = {"graph": {
            side: {t.name: [t.type[len("tensor("):-1], [d if isinstance(d, int) else -1 for d in t.shape]] for t in part}
            for side, part in (("inputs", session.get_inputs()), ("outputs", session.get_outputs()))}}
        keep(name, "graph", "all", {"probabilities": session.run(["probabilities"], {"images": images})[0]})
        keep(name, "graph", "1", {"probabilities": session.run(["probabilities"], {"images": images[:1]})[0]})
        score(name, lambda x: session.run(["probabilities"], {"images": x})[0])
else:
    try:  # LiteRT, the TFLite runtime's new home (the `litert` extra)
        from ai_edge_litert.interpreter import Interpreter
        runtime = "ai_edge_litert"
    except ImportError:  # tf.lite.Interpreter: deprecated since TF 2.20, its warning is ignored above
        import tensorflow as tf
        Interpreter, runtime = tf.lite.Interpreter, "tf.lite"
    for name in spec["artifacts"]:
        interpreter = Interpreter(model_path=spec["directory"] + "/" + name)
        signatures[name] = {}
        for key, io in interpreter.get_signature_list().items():
            runner = interpreter.get_signature_runner(key)
            details = runner.get_input_details(), runner.get_output_details()
            signatures[name][key] = {
                side: {k: [np.dtype(d["dtype"]).name, [int(x) for x in d["shape_signature"]]] for k, d in part.items()}
                for side, part in zip(("inputs", "outputs"), details)}
        runner = interpreter.get_signature_runner("serve_tensor")
        dtype = runner.get_input_details()["images"]["dtype"]
        # A full-integer model takes uint8 pixels: the 0..255 values, rounded.
        feed = images if dtype == np.float32 else np.clip(np.round(images), 0, 255).astype(dtype)
        keep(name, "serve_tensor", "all", runner(images=feed))
        score(name, lambda x: runner(images=x if dtype == np.float32 else np.clip(np.round(x), 0, 255).astype(dtype))["probabilities"])

leaked = sorted(m for m in sys.modules if m == "restransfer" or m.startswith("restransfer."))
np.savez(spec["output"], **outputs)
json.dump({"signatures": signatures, "restransfer_modules": leaked, "runtime": runtime}, open(spec["report"], "w"))
'''


@dataclass
class Check:
    """One artifact signature compared with the Keras model."""

    artifact: str
    signature: str
    images: int
    max_abs_diff: float
    tolerance: float
    top1_agree: int
    top1_ties: int
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    """The outcome of ``verify_export``; ``str()`` renders it for the terminal."""

    directory: Path
    format: str
    checks: list[Check]
    signatures: dict
    images_source: str
    runtime: str | None = None  # TFLite: "ai_edge_litert" or "tf.lite"; ONNX: "onnxruntime X.Y"
    scores: dict = field(default_factory=dict)  # artifact -> score_artifact's dict

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def render_signatures(self) -> str:
        lines = []
        for artifact, signatures in self.signatures.items():
            lines.append(f"{artifact}:")
            for name, io in signatures.items():
                lines.append(f"  signature '{name}':")
                for side in ("inputs", "outputs"):
                    for key, (dtype, shape) in sorted(io[side].items()):
                        dims = "any" if shape is None else f"({', '.join(map(str, shape))})"
                        lines.append(f"    {side}['{key}']  dtype: {dtype}  shape: {dims}")
        return "\n".join(lines)

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        runtime = f", interpreter {self.runtime}" if self.runtime else ""
        lines = [f"verify {self.directory} ({self.format}, images: {self.images_source}, fresh process "
                 f"without restransfer{runtime}): {verdict}"]
        for c in self.checks:
            batch = f"batch {c.images}"
            lines.append(
                f"  {'ok  ' if c.passed else 'FAIL'} {c.artifact} {c.signature} [{batch}]: max |dp| = "
                f"{c.max_abs_diff:.2e} (tolerance {c.tolerance:.0e}), top-1 {c.top1_agree}/{c.images} agree"
                + (f" ({c.top1_ties} within tolerance of a tie)" if c.top1_ties else "")
            )
            lines += [f"       {problem}" for problem in c.problems]
        lines += render_scores(self.scores)
        return "\n".join(lines)


def describe_score(sc: dict) -> str:
    """One artifact's score (export.json's "scores") in words: accuracy, or a multi-label export's mAP."""
    if "map" in sc:
        return (f"mAP {sc['map']:.4f} on {sc['images']} validation images (Keras {sc['keras_map']:.4f}), label sets "
                f"agreeing with model.keras at the thresholds {sc['label_set_agreement']:.2%}, mean |dp| "
                f"{sc['mean_abs_prob_diff']:.2e}")
    return (f"accuracy {sc['accuracy']:.4f} on {sc['images']} validation images, top-1 agreement with model.keras "
            f"{sc['top1_agreement']:.2%}, mean |dp| {sc['mean_abs_prob_diff']:.2e}")


def render_scores(scores: dict) -> list[str]:
    """Terminal lines for export.json's "scores"; a loss beyond the bound is shouted."""
    lines = []
    for artifact, sc in (scores or {}).items():
        lines.append(f"  score {artifact}: {describe_score(sc)}" if "map" in sc else
                     f"  score {artifact} on {sc['images']} validation images: accuracy {sc['accuracy']:.3f} "
                     f"(Keras {sc['keras_accuracy']:.3f}), top-1 agreement {sc['top1_agreement']:.1%}, "
                     f"mean |dp| {sc['mean_abs_prob_diff']:.2e}")
        if not sc["within_bound"]:
            what = "mAP" if "map" in sc else "accuracy"
            lines.append(f"  WARNING: {artifact} loses {sc['accuracy_loss']:.3f} {what} against the Keras "
                         f"model, more than the bound {ACCURACY_LOSS_BOUND}: check it before deploying it.")
    return lines


def child_sys_path() -> list[str]:
    """site-packages of this environment, without the project checkout."""
    project = str(Path(__file__).resolve().parents[2])
    paths = [*site.getsitepackages(), site.getusersitepackages()]
    return [p for p in dict.fromkeys(paths) if os.path.isdir(p) and os.path.abspath(p) != project]


def _keras_reference(model, manifest: dict, directory: Path, images: np.ndarray) -> np.ndarray:
    import keras

    from restransfer.errors import ConfigError
    from restransfer.models.loading import load_model_file

    if model is None or isinstance(model, (str, os.PathLike)):
        path = Path(model) if model is not None else manifest.get("source_model")
        if path is None or not Path(path).is_file():
            raise ExportError(
                f"Verifying '{directory}' on given images needs the Keras model it was exported from "
                f"({path or 'not recorded'} is missing). Pass --model RUN/model.keras."
            )
        try:
            model = load_model_file(path)
        except ConfigError as error:
            raise ExportError(str(error)) from None
    return keras.ops.convert_to_numpy(call_model(model, images)).astype(np.float32)


def _compare(artifact: str, signature: str, out: dict, reference: np.ndarray, class_names: list[str],
             tolerance: float, score_atol: float = 1e-6, thresholds: Sequence[float] | None = None) -> Check:
    probs = out["probabilities"]
    n = len(probs)
    ref = reference[:n]
    problems = []
    if probs.shape != ref.shape:
        problems.append(f"probabilities have shape {probs.shape}, the Keras model's {ref.shape}")
        return Check(artifact, signature, n, float("inf"), tolerance, 0, 0, problems)
    diff = float(np.max(np.abs(probs - ref))) if n else 0.0
    ordered = np.sort(ref, axis=-1)
    decisive = (ordered[:, -1] - ordered[:, -2]) > 2 * tolerance if ref.shape[-1] > 1 else np.ones(n, bool)
    agree = np.argmax(probs, -1) == np.argmax(ref, -1)
    if diff > tolerance:
        problems.append(f"probabilities differ by up to {diff:.3g} > {tolerance:g}")
    if np.any(decisive & ~agree):
        problems.append(f"top-1 differs on images {np.flatnonzero(decisive & ~agree).tolist()}")
    if "classes" in out:
        expected = np.array(class_names)[np.argmax(probs, -1)]
        if not np.array_equal(out["classes"], expected):
            problems.append(f"'classes' {out['classes'].tolist()} do not name the top-1 of 'probabilities'")
    if "scores" in out and not np.allclose(out["scores"], probs.max(-1), atol=score_atol):
        problems.append("'scores' are not the top-1 probabilities")
    if thresholds is not None and "labels" not in out and artifact == "saved_model":
        problems.append("a multi-label SavedModel must return 'labels' (the labels over their thresholds)")
    if thresholds is not None and "labels" in out:
        t = np.asarray(thresholds, np.float32)
        clear = np.all(np.abs(ref - t) > tolerance, axis=-1)  # no label within the tolerance of its threshold
        expected = [";".join(n for n, on in zip(class_names, row) if on) for row in ref >= t]
        wrong = [int(i) for i in np.flatnonzero(clear) if out["labels"][i] != expected[i]]
        if wrong:
            problems.append(f"'labels' differ from the labels over the thresholds on images {wrong}")
    return Check(artifact, signature, n, diff, tolerance, int(agree.sum()), int((~decisive).sum()), problems)


@contextlib.contextmanager
def verify_scratch() -> Iterator[Path]:
    """A temporary folder for the fresh process's inputs, spec and script, removed afterwards.

    A lock file beside it is held while it is in use; a verification killed on the way
    (``kill -9``) leaves both, and the next verification removes them (see
    `remove_stale_scratch`).
    """
    remove_stale_scratch(Path(tempfile.gettempdir()))
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    lock = FolderLock(scratch.with_name(scratch.name + ".lock"))
    lock.acquire()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        lock.release(remove=True)


def remove_stale_scratch(root: Path) -> list[Path]:
    """Delete this user's verification scratch folders under ``root`` whose process is gone."""
    removed = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    with contextlib.suppress(OSError):
        for path in root.glob(f"{SCRATCH_PREFIX}*"):
            try:
                if path.suffix == ".lock" or path.is_symlink() or not path.is_dir() or \
                        (uid is not None and path.stat().st_uid != uid):
                    continue
                lock = FolderLock(path.with_name(path.name + ".lock"))
                if lock.path.exists():
                    if not lock.acquire():
                        continue  # a verification running now
                elif time.time() - path.stat().st_mtime < UNLOCKED_SCRATCH_AGE_S:
                    continue
                shutil.rmtree(path, ignore_errors=True)
                lock.release(remove=True)
                lock.path.unlink(missing_ok=True)
                removed.append(path)
            except OSError:
                continue
    return removed


def verify_export(directory: str | os.PathLike, images: Sequence[str | os.PathLike] | None = None,
                  model=None, score_on: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> VerifyReport:
    """Reload an export in a fresh process and compare it with the Keras model.

    Args:
        directory: an export directory (written by ``export_model`` / ``restransfer export``).
        images: image files to feed; default the samples stored at export time.
        model: with ``images``, the Keras model (or its ``.keras`` path) to compare with; default
            the run's ``model.keras`` recorded in ``export.json``.
        score_on: ``(images, labels, keras_probabilities)``: validation images (float32 RGB
            0..255, the model's size), their class indices and the Keras model's probabilities;
            each artifact's accuracy and agreement on them lands in ``report.scores``.

    Returns:
        A ``VerifyReport``; ``report.passed`` tells whether every check held.
    """
    directory = Path(directory).absolute()
    manifest = read_manifest(directory)
    image_size = manifest["image_size"]
    class_names = manifest["class_names"]
    samples = read_samples(directory, manifest)
    if images:
        files = [Path(p).absolute() for p in images]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise DataError(f"Image files not found: {missing}.")
        source = f"{len(files)} given"
    else:
        files = samples.files
        if not files or samples.reference is None:
            raise ExportError(f"'{directory}' holds no sample images; pass some with --images.")
        source = f"{len(files)} stored samples ({manifest.get('samples_source', 'unknown')})"
    from restransfer.data.image_ops import read_images
    from restransfer.data.schema import DEFAULT_RESIZE

    tensor_inputs = read_images(files, image_size, manifest.get("resize", DEFAULT_RESIZE))
    reference = samples.reference if not images else _keras_reference(model, manifest, directory, tensor_inputs)

    with verify_scratch() as scratch:
        np.savez(scratch / "inputs.npz", images=tensor_inputs)
        if score_on is not None:
            np.savez(scratch / "score.npz", images=np.asarray(score_on[0], np.float32))
        spec = {
            "format": manifest["format"], "directory": str(directory),
            "artifacts": list(manifest["precision"]), "image_files": [str(p) for p in files],
            "tensor_inputs": str(scratch / "inputs.npz"), "output": str(scratch / "outputs.npz"),
            "report": str(scratch / "report.json"), "sys_path": child_sys_path(),
            "score_inputs": str(scratch / "score.npz") if score_on is not None else None,
        }
        (scratch / "spec.json").write_text(json.dumps(spec))
        (scratch / "verify_export.py").write_text(_SCRIPT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
        try:
            result = subprocess.run(
                [sys.executable, "-I", "-S", str(scratch / "verify_export.py"), str(scratch / "spec.json"),
                 str(os.getpid())],
                cwd=scratch, env=env, capture_output=True, text=True, timeout=FRESH_PROCESS_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise ExportError(f"Reloading '{directory}' took over {FRESH_PROCESS_TIMEOUT_S} s.") from None
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise ExportError(f"Reloading '{directory}' in a fresh process failed:\n{tail}")
        report = json.loads((scratch / "report.json").read_text())
        with np.load(scratch / "outputs.npz", allow_pickle=False) as data:
            raw = {key: data[key] for key in data.files}

    if report["restransfer_modules"]:
        raise ExportError(f"The verification process imported {report['restransfer_modules']}.")
    grouped: dict[tuple[str, str, str], dict] = {}
    thresholds = list(manifest["thresholds"].values()) if manifest.get("thresholds") else None
    # Without new validation images, the scores recorded at export time.
    scores = {} if score_on is not None else dict(manifest.get("scores") or {})
    for key, value in raw.items():
        artifact, signature, batch, output = key.split("|")
        if signature == "score":
            scores[artifact] = score_artifact(value, score_on[1], score_on[2], thresholds)
            continue
        grouped.setdefault((artifact, signature, batch), {})[output] = value
    checks = []
    for (artifact, signature, _), out in sorted(grouped.items()):
        precision = manifest["precision"].get(artifact, "float32")
        # A full-integer model quantises 'scores' and 'probabilities' separately: a step apart.
        score_atol = INT8_STEP if precision == "int8" else 1e-6
        checks.append(_compare(artifact, signature, out, reference, class_names, TOLERANCES[precision],
                               score_atol, thresholds))
    if manifest["format"] == "saved_model":
        from restransfer.export.saved_model import python_ops

        found = python_ops(directory)
        if found:
            checks.append(Check("saved_model", "graph", 0, 0.0, 0.0, 0, 0,
                                [f"the graph holds Python-only ops {sorted(found)}; it cannot be served"]))
    return VerifyReport(directory, manifest["format"], checks, report["signatures"], source, report.get("runtime"),
                        scores)


def score_artifact(probabilities: np.ndarray, labels: np.ndarray, reference: np.ndarray,
                   thresholds: Sequence[float] | None = None) -> dict:
    """Accuracy of an artifact's probabilities, the Keras model's, their top-1 agreement and mean |dp|.

    With a multi-label export's ``thresholds`` (``labels`` 0/1 rows): its mAP and the Keras
    model's (scikit-learn's), the share of images whose label set over the thresholds is the
    Keras model's, and mean |dp|; ``accuracy_loss`` is then the mAP lost.
    """
    probabilities = np.asarray(probabilities, np.float32)
    if thresholds is not None:
        return _score_multi_label(probabilities, np.asarray(labels), np.asarray(reference, np.float32), thresholds)
    labels = np.asarray(labels).reshape(-1)
    top1 = np.argmax(probabilities, -1)
    accuracy, keras_accuracy = float(np.mean(top1 == labels)), float(np.mean(np.argmax(reference, -1) == labels))
    return {
        "images": int(len(labels)), "accuracy": accuracy, "keras_accuracy": keras_accuracy,
        "top1_agreement": float(np.mean(top1 == np.argmax(reference, -1))),
        "mean_abs_prob_diff": float(np.mean(np.abs(probabilities - reference))),
        "accuracy_loss": keras_accuracy - accuracy,
        "within_bound": keras_accuracy - accuracy <= ACCURACY_LOSS_BOUND,
    }


def _score_multi_label(probabilities: np.ndarray, labels: np.ndarray, reference: np.ndarray,
                       thresholds: Sequence[float]) -> dict:
    from restransfer.diagnostics.multi_label import multi_label_report

    names = [str(i) for i in range(labels.shape[1])]
    ours = multi_label_report(probabilities, labels, names, thresholds=np.asarray(thresholds))["map"]
    keras_map = multi_label_report(reference, labels, names, thresholds=np.asarray(thresholds))["map"]
    t = np.asarray(thresholds, np.float32)
    loss = (keras_map or 0.0) - (ours or 0.0)
    return {
        "images": int(len(labels)), "map": ours, "keras_map": keras_map,
        "label_set_agreement": float(np.mean(np.all((probabilities >= t) == (reference >= t), axis=-1))),
        "mean_abs_prob_diff": float(np.mean(np.abs(probabilities - reference))),
        "accuracy_loss": loss, "within_bound": loss <= ACCURACY_LOSS_BOUND,
    }
