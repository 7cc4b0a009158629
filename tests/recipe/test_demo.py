"""`restransfer demo`: the Gradio page gives `predict`'s probabilities, refuses bad images with a
message, binds 127.0.0.1, and works in a real browser (headless Chromium uploads a digit)."""

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

# tests/run.sh installs the demo extra: under CI a missing Gradio fails instead of skipping.
if os.environ.get("CI") != "true":
    pytest.importorskip("gradio")

CLASSES = ["5", "6", "7", "8", "9"]
SIZE = 16


def _digits(count: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits 5-9 as uint8 RGB 64x64 pictures, and their class indices."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.flatnonzero(digits.target >= 5)[offset:offset + count]
    pictures = np.kron(digits.images[keep] * (255 / 16), np.ones((8, 8)))[..., None].repeat(3, -1)
    return pictures.round().astype(np.uint8), digits.target[keep] - 5


def _png(path, picture: np.ndarray):
    from PIL import Image

    Image.fromarray(picture).save(path)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 16 px run folder (the run-folder contract) with an untrained cifar_resnet20: the tests
    compare the page with `predict`, which needs no accuracy, only the same numbers."""
    import keras

    from restransfer import create_model
    from restransfer.models.heads import classifier

    keras.utils.set_random_seed(0)
    base = create_model("cifar_resnet20", include_top=False, preprocessing="auto", input_shape=(SIZE, SIZE, 3))
    model = keras.Model(base.inputs, classifier(base.output, len(CLASSES)))
    run = tmp_path_factory.mktemp("run")
    model.save(run / "model.keras")
    (run / "class_names.json").write_text(json.dumps(CLASSES))
    (run / "run.json").write_text(json.dumps({"status": "finished", "model": "cifar_resnet20",
                                              "backend": "tensorflow"}))
    (run / "recipe.yaml").write_text("model: {name: cifar_resnet20}\nphases: [{epochs: 1}]\n"
                                     f"data: {{source: digits, classes: [5, 6, 7, 8, 9], image_size: {SIZE}}}\n")
    return run


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    """A held-out digit as a 64x64 PNG, and its class name."""
    pictures, labels = _digits(1, offset=400)
    return _png(tmp_path_factory.mktemp("digit") / "digit.png", pictures[0]), CLASSES[labels[0]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(run_dir):
    from restransfer.recipe.demo import demo

    server = demo(run_dir, port=_free_port(), top_k=len(CLASSES), block=False)
    yield server
    server.close()


def _confidences(result) -> dict:
    labels = result[0] if isinstance(result, (list, tuple)) else result
    return {c["label"]: c["confidence"] for c in labels["confidences"]}


def test_client_gets_the_probabilities_predict_prints(server, run_dir, digit, tmp_path):
    from gradio_client import Client, handle_file

    from restransfer import predict

    assert server.url.startswith("http://127.0.0.1:")
    client = Client(server.url, verbose=False)
    labels, overlay = client.predict(handle_file(str(digit[0])), api_name="/classify")
    reference = dict(predict(run_dir, [digit[0]], top_k=len(CLASSES))[0]["top"])
    shown = _confidences(labels)
    assert shown.keys() == reference.keys()
    np.testing.assert_allclose([shown[c] for c in CLASSES], [reference[c] for c in CLASSES], atol=1e-6)
    assert labels["label"] == max(reference, key=reference.get)
    # The Grad-CAM overlay: the upload enlarged and coloured, not the upload itself.
    from PIL import Image

    picture = np.asarray(Image.open(overlay).convert("RGB"))
    assert picture.shape[0] >= 256 and picture.shape[0] == picture.shape[1]
    assert picture.std(axis=-1).mean() > 5  # jet colours over a grey digit


def test_bad_uploads_are_refused_with_a_message_not_a_crash(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from tests.data.conftest import animated_webp

    client = Client(server.url, verbose=False)
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    with pytest.raises(AppError, match=r"'notes.png' cannot be decoded"):
        client.predict(handle_file(str(not_image)), api_name="/classify")
    animated = tmp_path / "moving.webp"
    animated.write_bytes(animated_webp())
    with pytest.raises(AppError, match=r"'moving.webp' is refused: .*animated"):
        client.predict(handle_file(str(animated)), api_name="/classify")
    # A PNG whose header declares 40000 x 40000 pixels: refused before any decoding.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (40000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00")
    with pytest.raises(AppError, match=r"'bomb.png' is refused: its header declares 1,600,000,000 pixels"):
        client.predict(handle_file(str(bomb)), api_name="/classify")
    # The page still serves after the refusals.
    urllib.request.urlopen(server.url, timeout=10).read()


def test_onnx_export_demo_shows_the_top_k_of_predict(run_dir, digit):
    from gradio_client import Client, handle_file

    from restransfer import export_run, predict
    from restransfer.recipe.demo import demo

    export = export_run(run_dir, "onnx", run_dir / "exported", verify=False).path
    server = demo(export, port=_free_port(), top_k=2, block=False)
    try:
        labels, overlay = Client(server.url, verbose=False).predict(handle_file(str(digit[0])), api_name="/classify")
    finally:
        server.close()
    reference = predict(run_dir, [digit[0]], top_k=2)[0]["top"]
    shown = _confidences(labels)
    assert list(shown) == [label for label, _ in reference]  # the top 2 only, most probable first
    # ONNX Runtime's float32 arithmetic, within the export's verification tolerance.
    np.testing.assert_allclose(list(shown.values()), [p for _, p in reference], atol=1e-4)
    assert overlay is None  # no Grad-CAM without the Keras model


def test_demo_refuses_what_it_cannot_serve(tmp_path):
    from restransfer.errors import ConfigError
    from restransfer.recipe.demo import demo

    with pytest.raises(ConfigError, match="neither a run folder"):
        demo(tmp_path, block=False)
    with pytest.raises(ConfigError, match="port must be"):
        demo(tmp_path, port=70000, block=False)


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class _DevTools:
    """Chrome DevTools Protocol over --remote-debugging-pipe (fds 3 and 4): no websocket library."""

    def __init__(self, profile):
        to_browser_read, self._write = os.pipe()
        self._read, from_browser_write = os.pipe()

        def child_fds():
            # Chromium reads fd 3 and writes fd 4; moved above 10 first, so neither dup2 clobbers the other.
            reading, writing = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_read, from_browser_write))
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        self.process = subprocess.Popen(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
             "--remote-debugging-pipe",
             "--proxy-server=127.0.0.1:9",  # nothing off this machine; loopback is never proxied
             "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer, self._id = b"", 0

    def send(self, method: str, session: str | None = None, check: bool = True, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 16)
                assert chunk, "Chromium closed its DevTools pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert not check or "error" not in reply, reply
                return reply.get("result", {})

    def close(self):
        self.process.kill()
        self.process.wait(timeout=30)
        os.close(self._write)
        os.close(self._read)


def _wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# tests/run.sh installs Chromium under CI; there a missing browser fails instead of skipping.
@pytest.mark.skipif(_chromium() is None and os.environ.get("CI") != "true",
                    reason="no Chromium on this machine (apt-get install chromium)")
def test_browser_uploads_a_digit_and_reads_the_label_restransfer_demo_serves(run_dir, digit, tmp_path):
    from restransfer import predict

    port = _free_port()
    command = subprocess.Popen([sys.executable, "-m", "restransfer", "demo", str(run_dir), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    browser = None
    try:
        def serving():
            assert command.poll() is None, command.stdout.read()
            try:
                return urllib.request.urlopen(url, timeout=2).status == 200
            except OSError:
                return False

        _wait_until(serving, 120, "restransfer demo to serve")
        # Bound to the loopback interface only: no other address of this machine answers.
        with socket.socket() as probe:
            probe.settimeout(2)
            other = socket.gethostbyname(socket.gethostname())
            if not other.startswith("127."):
                assert probe.connect_ex((other, port)) != 0
        browser = _DevTools(tmp_path / "profile")
        target = browser.send("Target.createTarget", url=url)["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

        def evaluate(expression):
            # check=False: while the page loads there is no context to evaluate in yet.
            reply = browser.send("Runtime.evaluate", session, check=False, expression=expression, returnByValue=True)
            return reply.get("result", {}).get("value")

        _wait_until(lambda: evaluate("!!document.querySelector('#image input[type=file]')"), 60,
                    "the page's upload field")
        root = browser.send("DOM.getDocument", session)["root"]["nodeId"]
        field = browser.send("DOM.querySelector", session, nodeId=root, selector="#image input[type=file]")["nodeId"]
        browser.send("DOM.setFileInputFiles", session, nodeId=field, files=[str(digit[0])])
        expected = predict(run_dir, [digit[0]], top_k=1)[0]["top"][0][0]
        shown = _wait_until(lambda: evaluate(
            "(document.querySelector('#prediction h2') || {}).innerText"), 60, "the predicted label")
        assert shown.strip() == expected
    finally:
        if browser is not None:
            browser.close()
        command.terminate()
        command.wait(timeout=30)
