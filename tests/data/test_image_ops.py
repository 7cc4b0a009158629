import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from restransfer.data.image_ops import decode_image, read_images, resize_for_eval
from restransfer.errors import DataError
from tests.data.conftest import image_bytes


def _pil_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


@pytest.mark.parametrize("fmt,mode,tolerance", [
    ("JPEG", "RGB", 4), ("PNG", "RGB", 0), ("BMP", "RGB", 0), ("GIF", "P", 0),
    ("WEBP", "RGB", 0), ("PNG", "L", 0), ("JPEG", "L", 4), ("JPEG", "CMYK", 4),
])
def test_decode_matches_pillow_rgb(fmt, mode, tolerance):
    data = image_bytes(fmt, mode, size=(33, 21))
    image = decode_image(tf.constant(data))
    assert image.dtype == tf.uint8 and image.shape == (21, 33, 3)
    # TF and Pillow build libjpeg differently (IDCT, chroma upsampling): a few levels apart.
    assert np.abs(image.numpy().astype(int) - _pil_rgb(data)).max() <= tolerance


def test_alpha_is_composited_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red 200 everywhere
    rgba[..., 3] = [[0, 255, 128, 64]] * 4
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    image = decode_image(tf.constant(buffer.getvalue())).numpy().astype(float)
    alpha = rgba[..., 3:] / 255.0
    expected = np.round(rgba[..., :3] * alpha + 255 * (1 - alpha))
    np.testing.assert_array_equal(image, expected)
    assert image[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white


def test_gif_first_frame():
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    image = decode_image(tf.constant(buffer.getvalue())).numpy()
    assert image.shape == (8, 8, 3) and image[0, 0].tolist() == [255, 0, 0]


def test_corrupt_bytes_raise():
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_image(tf.constant(b"plain text"))


def test_resize_for_eval_range_shape_and_identity():
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (50, 70, 3), np.uint8))
    out = resize_for_eval(image, (24, 32))
    assert out.dtype == tf.float32 and out.shape == (24, 32, 3)
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255
    same = resize_for_eval(image, (50, 70))
    np.testing.assert_allclose(same.numpy(), image.numpy(), atol=1e-3)
    # A constant image stays constant: no darkening at the borders.
    flat = resize_for_eval(tf.fill([37, 53, 3], tf.constant(77, tf.uint8)), (16, 16))
    np.testing.assert_allclose(flat.numpy(), 77.0, atol=1e-3)


def test_decode_and_resize_in_a_graph():
    # Export traces these ops into a serving function: they must work on symbolic tensors.
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def serve(contents):
        return resize_for_eval(decode_image(contents), (16, 16))

    for fmt, mode in (("JPEG", "L"), ("PNG", "RGBA"), ("GIF", "P")):
        assert serve(tf.constant(image_bytes(fmt, mode))).shape == (16, 16, 3)


def test_bilinear_method_is_keras_plain_bilinear_and_area_is_antialiased():
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (90, 120, 3), np.uint8))
    bilinear = resize_for_eval(image, (30, 40), "bilinear")
    np.testing.assert_array_equal(bilinear.numpy(), tf.image.resize(image, (30, 40)).numpy())
    # A 3x shrink: area is the mean of each 3x3 block; bilinear only samples.
    blocks = image.numpy().astype(np.float64).reshape(30, 3, 40, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize_for_eval(image, (30, 40)).numpy(), blocks, atol=1e-3)
    assert np.abs(bilinear.numpy() - blocks).mean() > 10


def test_unknown_resize_method_names_the_choices():
    with pytest.raises(ValueError, match="area.*bilinear.*'nearest'"):
        resize_for_eval(tf.zeros([4, 4, 3], tf.uint8), (2, 2), "nearest")


def test_read_images_names_a_missing_or_broken_file(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(image_bytes("PNG", size=(20, 10)))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    batch = read_images([good, good], (8, 8), "bilinear")
    assert batch.shape == (2, 8, 8, 3) and batch.dtype == np.float32
    np.testing.assert_array_equal(
        batch[0], resize_for_eval(decode_image(tf.io.read_file(str(good))), (8, 8), "bilinear"))
    with pytest.raises(DataError, match=r"bad.jpg' cannot be decoded \(Unknown image file format"):
        read_images([good, tmp_path / "bad.jpg"], (8, 8))
    with pytest.raises(DataError, match="missing.png' does not exist"):
        read_images([tmp_path / "missing.png"], (8, 8))


def _webp(lossless: bool, size=(37, 21)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, "WEBP", lossless=lossless)
    return buffer.getvalue()


def _webp_extended(size=(37, 21)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, (10, 200, 30, 128)).save(buffer, "WEBP")  # alpha: a VP8X header
    return buffer.getvalue()


@pytest.mark.parametrize("make", [
    lambda: image_bytes("JPEG", size=(37, 21)), lambda: image_bytes("PNG", size=(37, 21)),
    lambda: image_bytes("GIF", "P", size=(37, 21)), lambda: image_bytes("BMP", size=(37, 21)),
    lambda: _webp(False), lambda: _webp(True), _webp_extended,
], ids=["jpeg", "png", "gif", "bmp", "webp-lossy", "webp-lossless", "webp-extended"])
def test_declared_pixels_reads_every_formats_header_without_decoding(make):
    from restransfer.data.image_ops import declared_pixels

    data = make()
    assert int(declared_pixels(tf.constant(data))) == 37 * 21
    assert int(tf.function(declared_pixels)(tf.constant(data))) == 37 * 21   # in a graph too
    assert int(declared_pixels(tf.constant(b""))) == 0
    assert int(declared_pixels(tf.constant(b"not an image at all"))) == 0


def test_read_images_refuses_huge_images_fifos_and_devices_before_reading_them(tmp_path):
    import os

    from tests.data.conftest import huge_png

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(huge_png())
    with pytest.raises(DataError, match="bomb.png' is refused: its header declares 529,000,000 pixels"):
        read_images([bomb], (8, 8))
    small = tmp_path / "small.png"
    small.write_bytes(image_bytes("PNG", size=(40, 30)))
    assert read_images([small], (8, 8), max_pixels=1200).shape == (1, 8, 8, 3)
    with pytest.raises(DataError, match="declares 1,200 pixels, above the limit of 1,000"):
        read_images([small], (8, 8), max_pixels=1000)
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(DataError, match="pipe.jpg' cannot be read: a FIFO"):
        read_images([tmp_path / "pipe.jpg"], (8, 8))
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    with pytest.raises(DataError, match="zero.jpg' cannot be read: a character device"):
        read_images([tmp_path / "zero.jpg"], (8, 8))
