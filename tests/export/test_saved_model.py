"""The SavedModel's serving signatures, in process: inputs, outputs, errors, assets, REST body."""

import base64
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from restransfer.data.image_ops import decode_image, resize_for_eval  # noqa: E402
from restransfer.errors import DataError  # noqa: E402
from restransfer.export.saved_model import predict_saved_model, python_ops  # noqa: E402

from .conftest import CLASS_NAMES, colour_images  # noqa: E402


@pytest.fixture(scope="module")
def served(exports):
    path = exports["saved_model"].path
    return path, tf.saved_model.load(str(path))


@pytest.fixture(scope="module")
def encoded():
    """7 images: JPEG and PNG, RGB, grayscale and RGBA, sizes other than the model's."""
    images, labels = colour_images(7, seed=3)
    pixels = images.astype(np.uint8)
    files = [
        tf.io.encode_jpeg(pixels[0], quality=90),
        tf.io.encode_png(pixels[1]),
        tf.io.encode_jpeg(tf.image.resize(pixels[2], (50, 70)).numpy().astype(np.uint8)),
        tf.io.encode_png(tf.image.rgb_to_grayscale(pixels[3])),
        tf.io.encode_png(np.concatenate([pixels[4], np.full((32, 32, 1), 255, np.uint8)], -1)),
        tf.io.encode_png(tf.image.resize(pixels[5], (20, 40)).numpy().astype(np.uint8)),
        tf.io.encode_jpeg(pixels[6]),
    ]
    return [f.numpy() for f in files], labels


def keras_probabilities(model, contents):
    images = np.stack([resize_for_eval(decode_image(tf.constant(c)), (32, 32)).numpy() for c in contents])
    return model.predict_on_batch(images)


def test_serving_default_takes_encoded_images_in_any_batch(served, encoded, trained_model):
    _, loaded = served
    serve = loaded.signatures["serving_default"]
    contents, _ = encoded
    expected = keras_probabilities(trained_model, contents)
    for batch in (contents[:1], contents):
        out = serve(image_bytes=tf.constant(batch))
        probabilities = out["probabilities"].numpy()
        assert out["probabilities"].dtype == tf.float32 and probabilities.shape == (len(batch), 3)
        np.testing.assert_allclose(probabilities, expected[: len(batch)], atol=1e-5)
        top = probabilities.argmax(-1)
        assert [c.decode() for c in out["classes"].numpy()] == [CLASS_NAMES[i] for i in top]
        np.testing.assert_allclose(out["scores"].numpy(), probabilities.max(-1), atol=1e-7)


def test_serve_tensor_equals_serving_default_after_decoding(served, encoded):
    _, loaded = served
    contents, _ = encoded
    images = np.stack([resize_for_eval(decode_image(tf.constant(c)), (32, 32)).numpy() for c in contents])
    from_tensor = loaded.signatures["serve_tensor"](images=tf.constant(images))["probabilities"].numpy()
    from_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant(contents))["probabilities"].numpy()
    np.testing.assert_allclose(from_tensor, from_bytes, atol=1e-6)


def test_bad_bytes_fail_with_a_message_naming_the_input_and_serving_goes_on(served, encoded):
    _, loaded = served
    serve = loaded.signatures["serving_default"]
    contents, _ = encoded
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\] is not a JPEG, PNG"):
        serve(image_bytes=tf.constant([contents[0], b"this is not an image"]))
    assert serve(image_bytes=tf.constant(contents[:2]))["probabilities"].shape == (2, 3)


def test_class_names_recipe_and_metrics_are_assets_and_graph_is_pure_tensorflow(served):
    path, loaded = served
    assert (path / "assets" / "class_names.txt").read_text().splitlines() == CLASS_NAMES
    assert "cifar_resnet20" in (path / "assets" / "recipe.yaml").read_text()
    assert json.loads((path / "assets" / "metrics.json").read_text())["final"]["val_accuracy"] == 1.0
    asset = loaded.restransfer_assets["class_names"].asset_path.numpy().decode()
    assert asset == str(path / "assets" / "class_names.txt")
    assert python_ops(path) == set()


def test_documented_rest_body_matches_the_signature(served, encoded):
    # TF Serving's row format: a signature with one input takes each instance as that input's
    # value, and {"b64": ...} as binary bytes. This is the body the README's curl example sends.
    _, loaded = served
    contents, _ = encoded
    body = json.loads(json.dumps({"instances": [{"b64": base64.b64encode(c).decode()} for c in contents[:2]]}))
    serve = loaded.signatures["serving_default"]
    inputs = serve.structured_input_signature[1]
    assert list(inputs) == ["image_bytes"] and inputs["image_bytes"].dtype == tf.string
    values = [base64.b64decode(instance["b64"]) for instance in body["instances"]]
    assert serve(image_bytes=tf.constant(values))["probabilities"].shape == (2, 3)


def test_predict_saved_model_returns_top_k_per_file(served, encoded, tmp_path):
    path, loaded = served
    contents, _ = encoded
    files = []
    for index, data in enumerate(contents[:3]):
        files.append(tmp_path / f"img{index}.bin")
        files[-1].write_bytes(data)
    results = predict_saved_model(path, files, top_k=2)
    served_out = loaded.signatures["serving_default"](image_bytes=tf.constant(contents[:3]))
    assert [r["image"] for r in results] == [str(f) for f in files]
    for result, cls, score in zip(results, served_out["classes"].numpy(), served_out["scores"].numpy()):
        assert len(result["top"]) == 2 and result["top"][0][0] == cls.decode()
        assert result["top"][0][1] == pytest.approx(float(score), abs=1e-6)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(DataError, match="notes.jpg' is not a JPEG"):
        predict_saved_model(path, [files[0], bad])


def test_mixed_precision_model_serves_float32(tmp_path):
    import keras

    from restransfer import create_model
    from restransfer.export import export_model

    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = create_model("cifar_resnet20", num_classes=3, input_shape=(32, 32, 3), preprocessing="auto")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.get_layer("conv1_conv").compute_dtype == "float16"
    export_model(model, tmp_path / "sm", "saved_model", CLASS_NAMES, verify=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    images = colour_images(2)[0]
    out = loaded.signatures["serve_tensor"](images=tf.constant(images))
    assert out["probabilities"].dtype == tf.float32 and out["scores"].dtype == tf.float32
    np.testing.assert_allclose(out["probabilities"].numpy(), model.predict_on_batch(images), atol=1e-4)


def test_bilinear_run_serves_with_bilinear_resize(trained_model, encoded, tmp_path):
    # A run trained with data.resize: bilinear exports a serving graph that resizes the same
    # way (serving equals evaluation), records it, and passes its own verification.
    from restransfer.export import export_model

    result = export_model(trained_model, tmp_path / "export", "saved_model", CLASS_NAMES,
                          image_size=(32, 32), resize="bilinear")
    assert result.verification.passed
    assert json.loads((tmp_path / "export" / "export.json").read_text())["resize"] == "bilinear"
    contents, _ = encoded
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(contents))
    bilinear = np.stack([resize_for_eval(decode_image(tf.constant(c)), (32, 32), "bilinear") for c in contents])
    expected = trained_model.predict_on_batch(bilinear)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    # Image 2 (50x70 JPEG) is shrunk: the two resizes differ there, so the test can tell them apart.
    assert np.abs(bilinear[2] - resize_for_eval(decode_image(tf.constant(contents[2])), (32, 32))).max() > 1


def _served_message(serve, batch):
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        serve(image_bytes=batch)
    return caught.value.message


def test_every_bad_request_names_the_item_and_why_and_serving_goes_on(served, encoded):
    from tests.data.conftest import huge_png

    _, loaded = served
    serve = loaded.signatures["serving_default"]
    contents, _ = encoded
    good = contents[0]
    photo = tf.io.encode_jpeg(np.random.default_rng(0).integers(0, 256, (120, 90, 3), np.uint8)).numpy()
    cases = {
        "empty string": ([good, b""], "image_bytes[1] is empty (0 bytes)"),
        "scalar": (good, "image_bytes must be a list (a 1-D batch) of encoded images; received a "
                         "tensor of rank 0"),
        "nested": ([[good]], "received a tensor of rank 2"),
        "truncated JPEG": ([good, photo[: len(photo) // 2]],
                           f"image_bytes[1] is a corrupt or truncated JPEG image ({len(photo) // 2} "
                           "bytes) that cannot be decoded"),
        "good with junk": ([good, b"junk", contents[1], b"more"],
                           "image_bytes[1] is not a JPEG, PNG, GIF, BMP or WebP image (4 bytes) "
                           "(2 of the 4 items failed)"),
        "pixel bomb": ([huge_png()], "image_bytes[0] declares 529000000 pixels, above the limit "
                                     "of 50000000 this model was exported with (max_pixels)"),
    }
    for name, (batch, expected) in cases.items():
        message = _served_message(serve, tf.constant(batch))
        assert expected in message, (name, message)
        assert "Incompatible shapes" not in message and "out of range" not in message, name
    empty = serve(image_bytes=tf.constant([], tf.string))
    assert empty["probabilities"].shape == (0, 3) and empty["classes"].shape == (0,)
    assert loaded.signatures["serve_tensor"](images=tf.zeros([0, 32, 32, 3]))["scores"].shape == (0,)
    assert serve(image_bytes=tf.constant(contents))["probabilities"].shape == (len(contents), 3)


def test_predict_saved_model_names_the_bad_file_and_why(served, encoded, tmp_path):
    path, _ = served
    good = tmp_path / "good.jpg"
    good.write_bytes(encoded[0][0])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.jpg' is empty \(0 bytes\)\.$"):
        predict_saved_model(path, [good, empty])


def test_max_pixels_is_set_at_export_and_recorded(trained_model, encoded, tmp_path):
    import os
    import stat

    from restransfer.export import export_model

    old = os.umask(0o022)
    try:
        result = export_model(trained_model, tmp_path / "sm", "saved_model", CLASS_NAMES,
                              max_pixels=40 * 40, verify=False)
    finally:
        os.umask(old)
    assert json.loads((result.path / "export.json").read_text())["max_pixels"] == 1600
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o755        # not mkdtemp's 0700
    assert stat.S_IMODE((result.path / "export.json").stat().st_mode) == 0o644
    serve = tf.saved_model.load(str(result.path)).signatures["serving_default"]
    square = tf.io.encode_png(np.zeros((40, 40, 3), np.uint8)).numpy()
    wide = tf.io.encode_png(np.zeros((40, 41, 3), np.uint8)).numpy()
    assert serve(image_bytes=tf.constant([square]))["probabilities"].shape == (1, 3)
    assert "image_bytes[1] declares 1640 pixels, above the limit of 1600" in _served_message(
        serve, tf.constant([square, wide]))


def test_class_names_with_line_breaks_are_refused_at_export(trained_model, tmp_path):
    from restransfer.export import ExportError, export_model

    with pytest.raises(ExportError, match=r"'sea\\nlion' holds a line break"):
        export_model(trained_model, tmp_path / "sm", "saved_model", ["red", "sea\nlion", "blue"])
    with pytest.raises(ExportError, match="max_pixels must be a positive"):
        export_model(trained_model, tmp_path / "sm", "saved_model", CLASS_NAMES, max_pixels=0)
    assert not (tmp_path / "sm").exists()


def test_an_animated_webp_fails_its_request_and_the_server_lives_on(served, encoded):
    from tests.data.conftest import animated_webp, run_python

    path, _ = served
    good = encoded[0][0]
    result = run_python(f"""
import tensorflow as tf
serve = tf.saved_model.load({str(path)!r}).signatures["serving_default"]
try:
    serve(image_bytes=tf.constant([{good!r}, {animated_webp()!r}]))
except tf.errors.InvalidArgumentError as error:
    print("REFUSED:", error.message)
print("NEXT:", serve(image_bytes=tf.constant([{good!r}]))["probabilities"].shape)
""")
    assert result.returncode == 0, f"rc {result.returncode}: {result.stderr[-2000:]}"
    assert ("image_bytes[1] is an animated WebP (the TensorFlow WebP decoder crashes on "
            "animations: send one frame as a still image)") in result.stdout, result.stdout
    assert "NEXT: (1, 3)" in result.stdout
