"""Export a model, and check every export on reload in a fresh process (``restransfer.recipe.export_run``
exports a run folder through it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from restransfer.data.schema import DEFAULT_RESIZE, RESIZE_METHODS
from restransfer.data.sources import MAX_IMAGE_PIXELS, class_name_problem
from restransfer.export.artifact import (
    SOURCE_DIGEST,
    THRESHOLDS_FILE,
    TOLERANCES,
    ExportError,
    ExportResult,
    call_model,
    check_format,
    check_target,
    file_sizes,
    staged_directory,
    write_manifest,
    write_reference,
    write_samples,
    write_thresholds,
)
from restransfer.export.verify import ACCURACY_LOSS_BOUND
from restransfer.files import sha256_file

NUM_SAMPLES = 8
# Calibration images for full-integer quantisation: TFLite's guides suggest a few hundred.
REPRESENTATIVE_COUNT = 200
# Validation images each export is scored on at most.
MAX_SCORE_IMAGES = 2000
SampleSource = Sequence[str | os.PathLike] | np.ndarray | object | None


def export_model(model, out: str | os.PathLike, format: str, class_names: Sequence[str], *,
                 image_size: Sequence[int] | None = None, samples: SampleSource = None,
                 assets: Mapping[str, str | os.PathLike] | None = None, quantize: str | None = None,
                 verify: bool = True, source_model: str | os.PathLike | None = None,
                 resize: str = DEFAULT_RESIZE, max_pixels: int = MAX_IMAGE_PIXELS,
                 representative: np.ndarray | object | None = None,
                 representative_count: int = REPRESENTATIVE_COUNT,
                 score_on: object | None = None, thresholds: Sequence[float] | None = None) -> ExportResult:
    """Export a Keras classifier (float32 RGB 0..255 in, probabilities out) to ``out``.

    Args:
        model: the Keras model, with its ``Preprocess`` layer inside.
        out: the export directory; must not exist or be empty (nothing is overwritten).
        format: ``"saved_model"``, ``"keras"``, ``"tflite"`` or ``"onnx"``.
        class_names: one name per output unit.
        image_size: ``(height, width)``; default the model's input size.
        samples: images stored with the export for verification: image file paths, an array
            ``[N, h, w, 3]`` in 0..255, or a ``tf.data.Dataset`` of ``(images, labels)`` batches;
            default synthetic images.
        assets: extra files to ship (SavedModel ``assets/``, else next to the model), e.g.
            ``{"recipe": "run/recipe.yaml"}``.
        quantize: TFLite only: also write a ``"float16"``, ``"dynamic"``-range or full-integer
            ``"int8"`` quantised model (uint8 RGB 0..255 in, int8 weights and activations).
        verify: reload in a fresh process and compare with ``model`` (raises on mismatch).
        source_model: the ``.keras`` file ``model`` came from, recorded so that ``export verify``
            can compare against it on new images.
        resize: how the SavedModel's bytes signature resizes decoded images, ``"area"`` or
            ``"bilinear"``: the run's ``data.resize``, so serving equals evaluation.
        max_pixels: the SavedModel's bytes signature refuses images whose header declares more
            pixels (width x height), before decoding them; default 50,000,000.
        representative: ``quantize="int8"`` only: images to calibrate activation ranges with,
            an array ``[N, h, w, 3]`` in 0..255 or a ``tf.data.Dataset`` of ``(images, labels)``
            batches, un-augmented and resized as in training (``export_run`` takes the run's
            training images).
        representative_count: how many of ``representative`` to use.
        score_on: validation images to score every artifact on (accuracy, top-1 agreement and
            mean absolute probability difference with ``model``, into ``export.json``'s
            ``"scores"``): ``(images, labels)`` arrays or a ``tf.data.Dataset`` of such batches.
        thresholds: a multi-label model's decision threshold per output (the run's
            ``thresholds.json``): recorded in ``export.json`` and ``thresholds.json`` beside the
            model; the SavedModel's signatures also return the ``labels`` over them. Scores are
            then per label (mAP, label-set agreement).

    Returns:
        An ``ExportResult`` (path, file sizes, verification report).
    """
    check_format(format, quantize)
    check_target(out)
    class_names = [str(name) for name in class_names]
    for name in class_names:
        problem = class_name_problem(name)
        if problem:
            raise ExportError(f"The class name {name!r} {problem}: exported models list their "
                              "classes one per line. Rename the class and train again.")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ExportError(f"max_pixels must be a positive whole number of pixels; received "
                          f"{max_pixels!r}.")
    num_outputs = model.output_shape[-1]
    if len(class_names) != num_outputs:
        raise ExportError(f"The model has {num_outputs} outputs but {len(class_names)} class names were given.")
    image_size = _image_size(model, image_size)
    if thresholds is not None:
        thresholds = [float(t) for t in thresholds]
        if len(thresholds) != num_outputs or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ExportError(f"thresholds must give one number in [0, 1] per output ({num_outputs}); received "
                              f"{thresholds}.")
    if resize not in RESIZE_METHODS:
        raise ExportError(f"resize must be one of {list(RESIZE_METHODS)}; received {resize!r}.")
    assets = {key: Path(path) for key, path in (assets or {}).items() if Path(path).is_file()}
    encoded, samples_source = _encode_samples(samples, image_size, resize)
    calibration = None
    if quantize == "int8":
        calibration = _representative_images(representative, representative_count, image_size)
    extra: dict = {}

    with staged_directory(out) as stage:
        if format == "saved_model":
            from restransfer.export.saved_model import write_saved_model

            write_saved_model(model, stage, class_names, image_size, assets, resize=resize,
                              max_pixels=max_pixels, thresholds=thresholds)
            artifacts, precision = ["saved_model.pb", "variables", "assets"], {"saved_model": "float32"}
        elif format == "keras":
            from restransfer.export.keras_file import write_keras

            artifacts = [write_keras(model, stage)]
            precision = {artifacts[0]: "float32"}
        elif format == "tflite":
            from restransfer.export.tflite import tflite_files, write_tflite

            artifacts = write_tflite(model, stage, class_names, image_size, quantize, calibration)
            precision = tflite_files(quantize)
            if calibration is not None:
                extra["int8"] = {"representative_images": len(calibration), "input_dtype": "uint8",
                                 "representative_source": _describe(representative)}
        else:
            from restransfer.export.onnx import write_onnx

            artifacts, extra["onnx"] = write_onnx(model, stage, image_size)
            precision = {artifacts[0]: "float32"}
        if format != "saved_model":
            for path in assets.values():
                shutil.copyfile(path, stage / path.name)
                artifacts.append(path.name)
            if thresholds is not None:
                write_thresholds(stage / THRESHOLDS_FILE, class_names, thresholds)
                artifacts.append(THRESHOLDS_FILE)
        sample_names = write_samples(stage, encoded)
        reference = _keras_probabilities(model, [stage / name for name in sample_names], image_size,
                                         resize)
        write_reference(stage, reference)
        manifest = _manifest(model, format, class_names, image_size, precision, sample_names, samples_source,
                             source_model, file_sizes(stage, artifacts), resize)
        if format == "saved_model":
            manifest["max_pixels"] = max_pixels
        if thresholds is not None:
            manifest["task"] = "multi_label"
            manifest["thresholds"] = dict(zip(class_names, thresholds))
        manifest.update(extra)
        write_manifest(stage, manifest)
        report = None
        if verify:
            from restransfer.export.verify import verify_export

            scoring = _scoring_data(score_on, model, multi_label=thresholds is not None)
            report = verify_export(stage, score_on=scoring)
            if report.scores:
                manifest["scores"] = report.scores
                manifest["accuracy_loss_bound"] = ACCURACY_LOSS_BOUND
                write_manifest(stage, manifest)
            if not report.passed:
                raise ExportError(f"The export does not reproduce the Keras model; nothing was written.\n{report}")
    out = Path(out).expanduser().absolute()
    if report is not None:
        report.directory = out
    return ExportResult(format=format, path=out, files=manifest["files"], verification=report)


def _scoring_data(score_on, model, multi_label: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(images, class indices (``multi_label``: 0/1 rows), Keras probabilities) to score the export on, or None."""
    import keras

    if score_on is None:
        return None
    if hasattr(score_on, "unbatch"):  # a tf.data.Dataset of (images, labels) batches
        pairs = [(np.asarray(x), np.asarray(y)) for x, y in score_on.unbatch().take(MAX_SCORE_IMAGES)]
        if not pairs:
            return None
        images, labels = np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])
    else:
        images, labels = (np.asarray(part) for part in score_on)
    if multi_label:
        labels = (labels > 0.5).astype(int)
    else:
        labels = np.argmax(labels, -1) if labels.ndim > 1 else labels.astype(int)
    images = images.astype(np.float32)
    reference = np.concatenate([keras.ops.convert_to_numpy(call_model(model, images[i:i + 64]))
                                for i in range(0, len(images), 64)]).astype(np.float32)
    return images, labels, reference


def _representative_images(representative, count: int, image_size) -> np.ndarray:
    """Up to ``count`` calibration images ``[N, h, w, 3]`` float32 0..255; a clear error without any."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ExportError(f"representative_count must be a positive whole number; received {count!r}.")
    if representative is None:
        raise ExportError("Full-integer (int8) quantisation calibrates on representative images, and none "
                          "were given: export from a run folder whose training data is readable here, or "
                          "pass representative=images.")
    if hasattr(representative, "unbatch"):  # a tf.data.Dataset of (images, labels) batches
        representative = [np.asarray(x) for x, _ in representative.unbatch().take(count)]
    images = np.asarray(representative, np.float32)[:count]
    if images.ndim != 4 or images.shape[1:] != (*image_size, 3) or not len(images):
        raise ExportError(f"Representative images must be [N, {image_size[0]}, {image_size[1]}, 3] with N >= 1; "
                          f"got shape {images.shape}.")
    return images


def _describe(source) -> str:
    return "dataset" if hasattr(source, "unbatch") else "image array"


def _image_size(model, image_size) -> tuple[int, int]:
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        return int(size[0]), int(size[1])
    height, width = model.input_shape[1:3]
    if height is None or width is None:
        raise ExportError(f"Model '{model.name}' takes any image size; pass image_size=(height, width).")
    return int(height), int(width)


def _encode_samples(samples: SampleSource, image_size,
                    resize: str) -> tuple[list[tuple[str, bytes]], str]:
    """(suffix, encoded bytes) sample images, and where they came from."""
    if isinstance(samples, (list, tuple)) and samples and isinstance(samples[0], (str, os.PathLike)):
        from restransfer.data.image_ops import read_images

        paths = [Path(p) for p in samples[:NUM_SAMPLES]]
        # A clear error naming a bad file before anything is written.
        read_images(paths, image_size, resize)
        encoded = []
        for path in paths:
            try:
                encoded.append((path.suffix.lower(), path.read_bytes()))
            except OSError as error:
                raise ExportError(f"Cannot read sample image '{path}': {error.strerror or error}.") from None
        return encoded, "image files"
    if samples is None:
        samples, source = _synthetic_images(image_size), "synthetic"
    elif hasattr(samples, "unbatch"):  # a tf.data.Dataset of (images, labels) batches
        samples = np.stack([np.asarray(x) for x, _ in samples.unbatch().take(NUM_SAMPLES)])
        source = "dataset"
    else:
        source = "image array"
    return _encode_arrays(np.asarray(samples)[:NUM_SAMPLES]), source


def _encode_arrays(images: np.ndarray) -> list[tuple[str, bytes]]:
    import tensorflow as tf

    if images.ndim != 4 or images.shape[-1] != 3:
        raise ExportError(f"Sample images must be [N, height, width, 3]; got shape {images.shape}.")
    pixels = np.clip(np.round(images), 0, 255).astype(np.uint8)
    # Alternate JPEG and PNG so verification exercises both decoders of the serving graph.
    return [(".jpg", tf.io.encode_jpeg(image, quality=95).numpy()) if i % 2 == 0
            else (".png", tf.io.encode_png(image).numpy()) for i, image in enumerate(pixels)]


def _synthetic_images(image_size, count: int = NUM_SAMPLES) -> np.ndarray:
    """Smooth random colour fields with texture: deterministic stand-ins for real images."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, (count, 4, 4, 3)).astype(np.float32)
    fields = tf.image.resize(coarse, image_size, method="bicubic").numpy()
    return np.clip(fields + rng.normal(0, 12, fields.shape), 0, 255)


def _keras_probabilities(model, files: Sequence[Path], image_size, resize: str) -> np.ndarray:
    import keras

    from restransfer.data.image_ops import read_images

    images = read_images(files, image_size, resize)
    return keras.ops.convert_to_numpy(call_model(model, images)).astype(np.float32)


def _manifest(model, format, class_names, image_size, precision, samples, samples_source, source_model,
              files, resize) -> dict:
    import keras

    import restransfer

    versions = {"restransfer": restransfer.__version__, "keras": keras.__version__}
    try:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    except ImportError:
        pass
    return {
        "format": format, "model": model.name, "image_size": list(image_size), "resize": resize,
        "class_names": class_names,
        "files": files, "precision": precision,
        "tolerances": {name: TOLERANCES[p] for name, p in precision.items()},
        "samples": samples, "samples_source": samples_source,
        "source_model": str(Path(source_model).absolute()) if source_model else None,
        SOURCE_DIGEST: sha256_file(source_model) if source_model else None, "versions": versions,
    }


def verify_export(*args, **kwargs):
    """See ``restransfer.export.verify.verify_export``."""
    from restransfer.export.verify import verify_export as verify

    return verify(*args, **kwargs)


__all__ = ["ExportError", "ExportResult", "export_model", "verify_export"]
