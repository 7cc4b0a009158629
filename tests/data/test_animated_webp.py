"""Animated WebP: TensorFlow 2.21's decoder kills the process on it ("double free or
corruption"), so every reader refuses it from the header before decoding. Each reproduction runs
in a subprocess: a crash fails the test instead of killing pytest."""

import json

import pytest

from tests.data.conftest import animated_webp, image_bytes, make_folder, run_python, write

pytestmark = pytest.mark.tensorflow


def _finished(result):
    assert result.returncode >= 0 and result.returncode != 134, (
        f"the process crashed (rc {result.returncode}): {result.stderr[-2000:]}")
    return result


def test_the_header_check_finds_animations_and_nothing_else():
    import tensorflow as tf

    from restransfer.data.image_ops import webp_animated
    from restransfer.data.webp import animated_webp as python_check

    still = [image_bytes("WEBP", size=(20, 12)), image_bytes("WEBP", "RGBA", size=(20, 12)),
             image_bytes("PNG"), image_bytes("JPEG"), b"", b"RIFF", b"RIFF\0\0\0\0WEBPVP8X"]
    moving = animated_webp()
    assert 300 < len(moving) < 1000
    flag_cleared = bytearray(moving)
    flag_cleared[20] &= ~0x02        # the ANIM and ANMF chunks still name it
    for data in still:
        assert not python_check(data) and not bool(webp_animated(tf.constant(data))), data[:20]
    for data in (moving, bytes(flag_cleared), animated_webp(frames=2)):
        assert python_check(data)
        assert bool(webp_animated(tf.constant(data)))
        assert bool(tf.function(webp_animated)(tf.constant(data)))


def test_decode_image_and_read_images_refuse_it_without_crashing(tmp_path):
    path = write(tmp_path / "moving.webp", animated_webp())
    result = _finished(run_python(f"""
import tensorflow as tf
from restransfer.data.image_ops import decode_image, read_images
from restransfer.errors import DataError
try:
    read_images([{str(path)!r}], (8, 8))
except DataError as error:
    print("READ:", error)
try:
    decode_image(tf.io.read_file({str(path)!r}))
except tf.errors.InvalidArgumentError as error:
    print("DECODE: refused")
"""))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "READ: Image '" in result.stdout and "moving.webp' is refused: it is an animated WebP" \
        in result.stdout, result.stdout
    assert "DECODE: refused" in result.stdout


def test_data_check_and_training_data_name_the_animated_file(tmp_path):
    root = make_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    write(root / "cat" / "moving.webp", animated_webp())
    report = tmp_path / "report.json"
    result = _finished(run_python(
        "import sys; from restransfer.cli import main; "
        f"sys.exit(main(['data', 'check', {str(root)!r}, '--json', {str(report)!r}]))"))
    assert result.returncode == 1, result.stderr[-2000:]
    bad = json.loads(report.read_text())["bad"]
    assert [b["path"].rsplit("/", 1)[-1] for b in bad] == ["moving.webp"]
    assert bad[0]["problem"].startswith("an animated WebP (TensorFlow's WebP decoder crashes")
    # Training's decoder (the data check's runtime twin) drops it instead of crashing.
    result = _finished(run_python(f"""
from restransfer.data.check import file_decode_errors
print(file_decode_errors([{str(root / "cat" / "moving.webp")!r}, {str(root / "cat" / "000.jpg")!r}]))
"""))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "moving.webp': 'corrupt or truncated (" in result.stdout and "000.jpg" not in result.stdout
