import base64
import io
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from restransfer.diagnostics.complexity import stage_table
from restransfer.diagnostics.interpret import top_losses
from restransfer.diagnostics.report import render_report, stage_marks, write_report
from restransfer.models import create_model

METRICS = {
    "phases": [{"name": "head", "epochs": 2, "val_accuracy": 0.5, "val_balanced_accuracy": 0.45, "val_macro_f1": 0.4,
                "val_loss": 1.2, "best_val_accuracy": 0.5, "seconds": 3.0, "images_per_s": 100.0},
               {"name": "finetune", "epochs": 3, "val_accuracy": 0.75, "val_loss": 0.7, "best_val_accuracy": 0.8,
                "seconds": 5.5, "images_per_s": 90.0}],
    "final": {"val_accuracy": 0.75, "val_balanced_accuracy": 0.75, "val_macro_f1": 0.7335, "val_loss": 0.7,
              "epochs": 5, "seconds": 8.5, "images_per_s": 95.0,
              "per_class": {"cat": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2},
                            "<dog>": {"precision": 0.667, "recall": 1.0, "f1": 0.8, "support": 2}}},
    "best": {"epoch": 4, "val_accuracy": 0.8},
    "per_class": {"cat": {"precision": 1.0, "recall": 0.5, "f1-score": 0.667, "support": 2},
                  "<dog>": {"precision": 0.667, "recall": 1.0, "f1-score": 0.8, "support": 2}},
}


class Page(HTMLParser):
    """Collects what a reader sees: headings, table rows, image sources, links."""

    def __init__(self):
        super().__init__()
        self.headings, self.rows, self.images, self.links, self.scripts = [], [], [], [], 0
        self._text, self._row, self._in = [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2", "h3", "td", "th", "pre"):
            self._in, self._text = tag, []
        if tag == "tr":
            self._row = []
        if tag == "img":
            self.images.append(attrs["src"])
        if tag in ("a", "link") and "href" in attrs:
            self.links.append(attrs["href"])
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        if self._in:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == self._in:
            text = "".join(self._text).strip()
            if tag in ("h1", "h2", "h3"):
                self.headings.append(text)
            elif tag in ("td", "th") and self._row is not None:
                self._row.append(text)
            elif tag == "pre":
                self.pre = text
            self._in = None
        if tag == "tr":
            self.rows.append(self._row)
            self._row = None


def solid_png(path, colour, size=(320, 200)):
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture(scope="module")
def report_values(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    model = create_model("cifar_resnet20", num_classes=2)
    stages = stage_marks(stage_table(model), [["conv1", "conv2", "conv3", "conv4"], ["conv1"]])
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    rows = top_losses(probabilities, np.array([0, 0, 1, 1]), ["cat", "<dog>"], n=2,
                      paths=["cat/a.jpg", "cat/b&c.jpg", "dog/d.jpg", "dog/e.jpg"])
    return dict(title="runs/pets", recipe_text="model:\n  name: cifar_resnet20\n# <not a tag>\n",
                stages=stages, phase_names=["head", "finetune"], metrics=METRICS,
                figures={"training curves": solid_png(folder / "curves.png", (255, 0, 0)),
                         "confusion matrix": solid_png(folder / "cm.png", (0, 0, 255), (200, 200)),
                         "top losses": folder / "missing.png"},
                top_losses=rows, most_confused=[("cat", "<dog>", 1)],
                skipped=[{"path": "dog/broken.jpg", "part": "train", "problem": "not a JPEG"}],
                notes=["weights.h5 has a classifier head with 1000 classes; skipping it."],
                facts={"model": "cifar_resnet20", "backend": "tensorflow"})


def test_report_holds_every_section_with_the_run_values(report_values):
    page = Page()
    page.feed(render_report(**report_values))
    assert page.headings == ["runs/pets", "Metrics per phase", "Per class (validation)", "Stages", "Figures",
                             "Top losses", "Most confused", "What was skipped", "Recipe"]
    rows = [r for r in page.rows if r]
    assert ["head", "2", "0.5000", "0.4500", "0.4000", "0.5000", "1.2000", "3.0", "100.0"] in rows
    assert ["final", "5", "0.7500", "0.7500", "0.7335", "0.8000", "0.7000", "8.5", "95.0"] in rows
    # The stage table marks frozen stages per phase: everything but the head, then conv1 only.
    assert ["conv1", "32x32x16", "496", "frozen", "frozen"] in rows
    assert ["conv4", "8x8x64", "204,288", "frozen", "trainable"] in rows
    assert ["head", "2", "130", "trainable", "trainable"] in rows
    assert ["total", "", "270,578", "", ""] in rows
    assert ["1", "cat/b&c.jpg", "cat", "<dog>", "0.700", "1.204"] in rows  # escaped, and read back as text
    assert ["cat", "<dog>", "1"] in rows
    assert ["dog/broken.jpg", "train", "not a JPEG"] in rows
    assert page.pre == "model:\n  name: cifar_resnet20\n# <not a tag>"


def test_report_is_self_contained(report_values, tmp_path):
    path = write_report(tmp_path / "report.html", **report_values)
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    assert page.links == [] and page.scripts == 0 and "http" not in text.replace("http-equiv", "")
    assert len(page.images) == 2  # the missing figure is listed, not embedded
    assert "Not available: top losses." in text
    sizes = []
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        sizes.append(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size)
    assert sizes == [(320, 200), (200, 200)]


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


# tests/run.sh installs Chromium under CI; there a missing browser fails instead of skipping.
@pytest.mark.skipif(_chromium() is None and os.environ.get("CI") != "true",
                    reason="no Chromium on this machine (apt-get install chromium)")
def test_report_renders_its_figures_offline_in_headless_chromium(report_values, tmp_path):
    page = write_report(tmp_path / "report.html", **report_values)
    shot = tmp_path / "shot.png"
    # No network at all: every figure must come from the page itself.
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
                    "--hide-scrollbars", "--window-size=1200,2600", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    red = np.sum((pixels[:, 0] > 240) & (pixels[:, 1] < 15) & (pixels[:, 2] < 15))
    blue = np.sum((pixels[:, 2] > 240) & (pixels[:, 0] < 15) & (pixels[:, 1] < 15))
    assert red >= 0.9 * 320 * 200 and blue >= 0.9 * 200 * 200, (red, blue)


def test_report_command_writes_the_page_of_a_run_folder(tmp_path):
    import json

    from restransfer.cli import main
    from restransfer.models.heads import classifier

    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    (run / "recipe.yaml").write_text(
        "model: {name: cifar_resnet20}\ndata: {source: digits, classes: [5, 6], image_size: 32}\n"
        "phases:\n  - {name: head, epochs: 1, freeze: all_but_head}\n  - {name: tune, epochs: 1, freeze: [conv1]}\n")
    base = create_model("cifar_resnet20", include_top=False, preprocessing="auto", input_shape=(32, 32, 3))
    import keras

    keras.Model(base.inputs, classifier(base.output, 2)).save(run / "model.keras")
    (run / "class_names.json").write_text('["5", "6"]')
    (run / "run.json").write_text('{"status": "finished", "model": "cifar_resnet20", "backend": "tensorflow"}')
    (run / "metrics.json").write_text(json.dumps(METRICS))
    solid_png(run / "plots" / "training_curves.png", (255, 0, 0))
    (run / "data_skipped.json").write_text('{"skipped": [{"path": "5/x.png", "part": "train", "problem": "empty"}]}')
    (run / "train.log").write_text("10:00:00 Weights: source/model.keras has a classifier head (5 classes) but "
                                   "the model has none (include_top=False); skipping it.\n")
    assert main(["report", str(run)]) == 0
    page = Page()
    page.feed((run / "report.html").read_text())
    rows = [r for r in page.rows if r]
    assert ["conv1", "32x32x16", "496", "frozen", "frozen"] in rows
    assert ["conv2", "32x32x16", "14,208", "frozen", "trainable"] in rows
    assert ["5/x.png", "train", "empty"] in rows and len(page.images) == 1
    assert "skipping it" in (run / "report.html").read_text()


def test_report_says_why_a_temperature_stayed_1(report_values):
    calibration = {"temperature": 1.0, "images": 20, "fitted_on": "held-out validation", "bins": 15,
                   "ece_before": 0.01, "ece_after": 0.01, "nll_before": 0.02, "nll_after": 0.02}
    fitted = render_report(**{**report_values, "metrics": {**METRICS, "calibration": calibration}})
    assert "fitted on 20 held-out validation images" in fitted and "no minimum" not in fitted
    stayed = render_report(**{**report_values, "metrics": {**METRICS, "calibration": {**calibration,
                                                                                      "no_minimum": True}}})
    assert "all of them are classified correctly, so the NLL has no minimum and the temperature stays 1" in stayed
