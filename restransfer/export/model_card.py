"""``RUN/export/MODEL_CARD.md``: what a run's exports are, what they score, how to load them.

Written by ``export_run`` with the first export into ``RUN/export/`` and rewritten with each
later one, so its list of exports is the folder's. Everything on it is read from the run's own
files (recipe, metrics.json, each export's export.json) and the data counts at export time.
"""

from __future__ import annotations

import json
from pathlib import Path

from restransfer.export.artifact import MANIFEST
from restransfer.export.verify import describe_score

CARD = "MODEL_CARD.md"
_LOAD = {
    "saved_model": 'import tensorflow as tf\nmodel = tf.saved_model.load("saved_model")\n'
                   'out = model.signatures["serving_default"](image_bytes=tf.constant([open("x.jpg", "rb").read()]))',
    "keras": 'import keras\nmodel = keras.saving.load_model("keras/model.keras")\nprobabilities = model(images)',
    "tflite": 'from ai_edge_litert.interpreter import Interpreter\n'
              'runner = Interpreter(model_path="tflite/model.tflite").get_signature_runner("serve_tensor")\n'
              'probabilities = runner(images=images)["probabilities"]',
    "onnx": 'import onnxruntime\nsession = onnxruntime.InferenceSession("onnx/model.onnx")\n'
            'probabilities = session.run(["probabilities"], {"images": images})[0]',
}


def write_model_card(run_dir: Path, recipe, class_names: list[str], counts: dict | None,
                     thresholds: dict[str, float] | None = None) -> Path:
    """Write (or rewrite) ``run_dir/export/MODEL_CARD.md``; returns its path.

    ``thresholds``: a multi-label run's decision threshold per label, listed with the labels.
    """
    export_dir = run_dir / "export"
    if thresholds is None:
        lines = [f"# Model card: {run_dir.name}", "", "## Classes", ""]
        lines += [f"{i}. {name}" for i, name in enumerate(class_names)]
    else:
        lines = [f"# Model card: {run_dir.name}", "", "## Labels (multi-label)", "",
                 "A label is present when its probability is at or above its threshold (chosen on the validation "
                 "images for each label's best F1; `thresholds.json` in every export).", "",
                 "| # | label | threshold |", "|---|---|---|"]
        lines += [f"| {i} | {name} | {thresholds[name]:.4f} |" for i, name in enumerate(class_names)]
    model = recipe.model
    lines += ["", "## Model", "",
              f"- backbone: `{model.name}`, weights: `{getattr(model, 'weights', None) or 'none (trained from scratch)'}`",
              f"- input: float32 RGB 0..255, {recipe.image_size[0]}x{recipe.image_size[1]} "
              f"(height x width), whole image resized with `{recipe.data.resize}`; normalisation is inside "
              "the model", "- output: one probability per class, in the order above" if thresholds is None else
              "- output: one independent (sigmoid) probability per label, in the order above"]
    if counts:
        lines += ["", "## Training data" + (" (images holding each label)" if thresholds else ""), "",
                  "| split | " + " | ".join(class_names) + " |",
                  "|---|" + "---|" * len(class_names)]
        lines += [f"| {part} | " + " | ".join(str(n) for n in per_class) + " |" for part, per_class in counts.items()]
    metrics = _read(run_dir / "metrics.json")
    final = metrics.get("final") if isinstance(metrics, dict) else None
    if isinstance(final, dict) and final:
        lines += ["", "## Final metrics", ""]
        lines += [f"- {key}: {value:.4g}" if isinstance(value, float) else f"- {key}: {value}"
                  for key, value in final.items() if isinstance(value, (int, float, str))]
        calibration = metrics.get("calibration")
        if isinstance(calibration, dict):
            lines += [f"- calibration {key}: {value}" for key, value in calibration.items()
                      if isinstance(value, (int, float, str))]
    lines += ["", "## Exports", ""]
    for folder in sorted(p for p in export_dir.iterdir() if (p / MANIFEST).is_file()):
        manifest = _read(folder / MANIFEST)
        if not isinstance(manifest, dict):
            continue
        fmt = manifest.get("format")
        lines += [f"### `{folder.name}/` ({fmt})", ""]
        for artifact, size in (manifest.get("files") or {}).items():
            score = (manifest.get("scores") or {}).get(artifact)
            detail = f": {describe_score(score)}" if score else ""
            lines.append(f"- `{artifact}` ({size} bytes){detail}")
        if fmt in _LOAD:
            lines += ["", "Load without restransfer:", "", "```python", _LOAD[fmt], "```"]
        lines.append("")
    path = export_dir / CARD
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
