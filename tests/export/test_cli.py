"""`restransfer export` and `restransfer predict` on an exported SavedModel, as a user runs them."""

import os
import subprocess
import sys

import numpy as np

from .conftest import CLASS_NAMES, colour_images


def run_cli(*args):
    # A wide terminal, so rich tables do not elide the image paths.
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "restransfer", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_export_verify_on_given_images_prints_signatures(exports, tmp_path):
    from PIL import Image

    images, _ = colour_images(2, seed=11)
    paths = []
    for index, image in enumerate(images.astype(np.uint8)):
        paths.append(tmp_path / f"given_{index}.jpg")
        Image.fromarray(image).save(paths[-1], quality=92)
    result = run_cli("export", "verify", exports["saved_model"].path, "--images", *paths)
    assert result.returncode == 0, result.stderr
    assert "signature 'serving_default'" in result.stdout
    assert "inputs['image_bytes']  dtype: string  shape: any" in result.stdout
    assert "outputs['probabilities']  dtype: float32  shape: (-1, 3)" in result.stdout
    assert "images: 2 given" in result.stdout and "PASSED" in result.stdout

    predicted = run_cli("predict", exports["saved_model"].path, *paths, "--top-k", "1")
    assert predicted.returncode == 0, predicted.stderr
    assert "given_0.jpg" in predicted.stdout and any(name in predicted.stdout for name in CLASS_NAMES)


def test_export_into_non_empty_directory_is_one_clear_line(run_dir, tmp_path):
    (tmp_path / "old.txt").write_text("keep")
    result = run_cli("export", run_dir, "--format", "tflite", "--out", tmp_path)
    assert result.returncode == 1
    assert "already exists and is not empty; nothing was overwritten" in result.stderr
    assert "Traceback" not in result.stderr and (tmp_path / "old.txt").read_text() == "keep"
