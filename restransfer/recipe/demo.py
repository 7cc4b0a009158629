"""`restransfer demo RUN|EXPORT`: a Gradio page on 127.0.0.1 to try a model on one image.

An image dropped or uploaded on the page is classified the way ``restransfer predict`` does it:
a run folder through `RunPredictor` (the run's resize, the image checks of
`restransfer.data.image_ops.read_images`), a SavedModel export through its ``serving_default``
bytes signature, and the other exports (``.keras``, ONNX, TFLite) on `read_images` with the size
and resize their ``export.json`` records. The page shows the top-k labels and, for a run folder,
the Grad-CAM overlay of the predicted class.

The event runs with ``preprocess=False``: Gradio's image component would otherwise decode the
upload with PIL (no pixel limit, alpha dropped, re-encoded) before restransfer's checks see it;
so the function receives the uploaded file as it came, kept in Gradio's upload cache (Gradio
refuses payload paths outside it). A refused image becomes a ``gr.Error`` message on the page
(and an ``AppError`` in ``gradio_client``), never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restransfer.errors import ConfigError, RestransferError

HOST = "127.0.0.1"
# The Grad-CAM overlay is shown at least this many pixels wide: a 16 px run's would be a speck.
OVERLAY_MIN_SIDE = 256
API_NAME = "classify"


@dataclass
class DemoModel:
    """What the page calls: ``classify(path) -> (probabilities, overlay or None)``."""

    name: str
    class_names: list[str]
    classify: Callable[[str], tuple[np.ndarray, np.ndarray | None]]
    explains: bool


def load_demo_model(target: str | os.PathLike) -> DemoModel:
    """A run folder (with Grad-CAM) or an export directory, loaded once for the page.

    Raises:
        ConfigError: ``target`` is neither a run folder with a ``model.keras`` nor an export.
    """
    path = Path(target)
    if (path / "run.json").is_file():
        return _run_model(path)
    if (path / "export.json").is_file() or (path / "saved_model.pb").is_file():
        return _export_model(path)
    raise ConfigError(f"'{target}' is neither a run folder (run.json) nor an export directory (export.json): "
                      "pass a finished run, e.g. `restransfer demo runs/quickstart/target`, or one of its "
                      "exports, e.g. runs/quickstart/target/export/saved_model.")


def _run_model(path: Path) -> DemoModel:
    from restransfer.diagnostics.gradcam import grad_cam, overlay
    from restransfer.recipe.predict import RunPredictor

    predictor = RunPredictor.load(path)

    def classify(image: str):
        batch = predictor.read([image])
        probabilities = predictor.probabilities(batch)[0]
        try:
            cam = grad_cam(predictor.model, batch, classes=int(np.argmax(probabilities)))
        except RestransferError:
            return probabilities, None  # a model without named stages: labels only
        return probabilities, _enlarged(overlay(batch[0], cam.heatmaps[0]))

    return DemoModel(path.name, predictor.class_names, classify, explains=True)


def _export_model(path: Path) -> DemoModel:
    from restransfer.export.artifact import read_manifest

    if (path / "saved_model.pb").is_file():
        from restransfer.export.saved_model import load_serving

        serve, class_names = load_serving(path)
        return DemoModel(path.name, class_names, lambda image: (serve([image])[0], None), explains=False)
    manifest = read_manifest(path)
    try:
        class_names = [str(name) for name in manifest["class_names"]]
        image_size = tuple(int(side) for side in manifest["image_size"])
        resize, fmt = str(manifest.get("resize", "area")), manifest["format"]
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"'{path / 'export.json'}' lacks class_names, image_size or format; "
                          "re-export the run.") from None
    run = _runner(path, fmt, manifest)

    def classify(image: str):
        from restransfer.data.image_ops import read_images

        return np.asarray(run(read_images([image], image_size, resize)), np.float32)[0], None

    return DemoModel(path.name, class_names, classify, explains=False)


def _runner(path: Path, fmt: str, manifest: dict) -> Callable[[np.ndarray], np.ndarray]:
    """``images [N, h, w, 3] float32 0..255 -> probabilities`` for a ``.keras``, ONNX or TFLite export."""
    files = list(manifest.get("files") or {})
    if fmt == "keras":
        import keras

        from restransfer.export.artifact import call_model
        from restransfer.models.loading import load_model_file

        model = load_model_file(path / next((f for f in files if f.endswith(".keras")), "model.keras"))
        return lambda images: keras.ops.convert_to_numpy(call_model(model, images))
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
        return lambda images: session.run(["probabilities"], {"images": images})[0]
    if fmt == "tflite":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter  # noqa: N806  (the deprecated fallback, as verify uses)
        runner = Interpreter(model_path=str(path / "model.tflite")).get_signature_runner("serve_tensor")
        return lambda images: np.concatenate([runner(images=images[i:i + 1])["probabilities"]
                                              for i in range(len(images))])
    raise ConfigError(f"'{path}' is a {fmt!r} export, which the demo cannot run; use the run folder or its "
                      "saved_model, keras, onnx or tflite export.")


def _enlarged(picture: np.ndarray) -> np.ndarray:
    """``picture`` repeated pixel by pixel until its longer side reaches ``OVERLAY_MIN_SIDE``."""
    factor = max(1, -(-OVERLAY_MIN_SIDE // max(picture.shape[:2])))
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def build_demo(target: str | os.PathLike | DemoModel, *, top_k: int = 5):
    """The Gradio ``Blocks`` page of a run folder or an export (not yet launched).

    Args:
        target: a run folder, an export directory, or a loaded `DemoModel`.
        top_k: labels shown (at most the number of classes).

    Returns:
        A ``gradio.Blocks`` with one endpoint, ``/classify``: the uploaded image file in,
        ``(top-k label confidences, Grad-CAM overlay or None)`` out.
    """
    import gradio as gr

    model = target if isinstance(target, DemoModel) else load_demo_model(target)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive whole number; received {top_k!r}.")
    k = min(top_k, len(model.class_names))

    def classify(upload):
        if not upload:
            return None, None
        path, shown = str(upload["path"]), upload.get("orig_name") or Path(upload["path"]).name
        try:
            probabilities, picture = model.classify(path)
        except RestransferError as error:
            # The message names Gradio's cached copy; the user knows the file by its own name.
            raise gr.Error(str(error).replace(path, shown), title="Image refused", print_exception=False) from None
        return {name: float(p) for name, p in zip(model.class_names, probabilities)}, picture

    explained = "; the Grad-CAM overlay shows where the model looked" if model.explains else ""
    with gr.Blocks(title=f"restransfer: {model.name}", analytics_enabled=False) as page:
        gr.Markdown(f"## {model.name}\nDrop or upload an image (JPEG, PNG, GIF, BMP or WebP): the top {k} "
                    f"of {len(model.class_names)} classes appear{explained}.")
        with gr.Row():
            image = gr.Image(label="image", sources=["upload", "clipboard"], elem_id="image")
            with gr.Column():
                labels = gr.Label(num_top_classes=k, label="prediction", elem_id="prediction")
                cam = gr.Image(label="Grad-CAM", interactive=False, visible=model.explains, elem_id="gradcam")
        image.upload(classify, image, [labels, cam], preprocess=False, api_name=API_NAME)
        image.clear(lambda: (None, None), None, [labels, cam], api_visibility="private")
    return page


@dataclass
class DemoServer:
    """A launched demo page: its address, and ``close()`` to stop it."""

    url: str
    page: object

    def close(self) -> None:
        self.page.close()


def demo(target: str | os.PathLike, *, port: int | None = None, top_k: int = 5, block: bool = True) -> DemoServer:
    """Serve the demo page of a run folder or an export on ``http://127.0.0.1:PORT``.

    Bound to 127.0.0.1 only: the page runs the model for anyone who reaches it. To show it to a
    colleague, forward the port (``ssh -L``) rather than binding it wider.

    Args:
        target: a run folder, or an export directory (SavedModel, ``.keras``, ONNX, TFLite).
        port: the port; default the first free one from 7860.
        top_k: labels shown.
        block: serve until interrupted (Ctrl-C); ``False`` returns at once with the server running.

    Example:
        >>> server = demo("runs/quickstart/target", port=7860, block=False)
        >>> server.url
        'http://127.0.0.1:7860/'
    """
    from restransfer.data.sources import MAX_IMAGE_BYTES

    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ConfigError(f"port must be a whole number in 1..65535; received {port!r}.")
    page = build_demo(target, top_k=top_k)
    page.queue(default_concurrency_limit=1)  # one model, one image at a time
    try:
        _, url, _ = page.launch(server_name=HOST, server_port=port, share=False, prevent_thread_lock=True,
                                max_file_size=MAX_IMAGE_BYTES, quiet=not block, show_error=False,
                                footer_links=[], mcp_server=False, ssr_mode=False, inbrowser=False)
    except OSError as error:
        raise ConfigError(f"The demo cannot listen on {HOST}:{port or 'a free port from 7860'} ({error}); "
                          "pass another --port.") from None
    server = DemoServer(url=url, page=page)
    if block:
        print(f"restransfer demo of {Path(target)} on {url} (Ctrl-C stops it)", flush=True)
        try:
            page.block_thread()
        finally:
            server.close()
    return server
