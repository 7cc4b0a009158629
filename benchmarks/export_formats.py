"""Export a trained run in every format and record what each export scores against model.keras.

    python benchmarks/export_formats.py runs/quickstart/target --out benchmarks/results/export-formats-quickstart.json

Each format is exported into a scratch folder (the run's own export/ is left alone) through
``export_run``, which verifies it in a fresh process and scores it on the run's validation
images; this script collects export.json's sizes and scores. One trained model, so no seeds:
the numbers compare the formats of that model with each other.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

EXPORTS = [("saved_model", None), ("keras", None), ("tflite", "float16"), ("tflite", "dynamic"),
           ("tflite", "int8"), ("onnx", None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a trained run folder")
    parser.add_argument("--out", required=True, help="results JSON to write")
    args = parser.parse_args()

    from restransfer import export_run

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for format, quantize in EXPORTS:
            started = time.perf_counter()
            result = export_run(args.run, format, Path(scratch) / f"{format}-{quantize}", quantize=quantize)
            seconds = time.perf_counter() - started
            manifest = json.loads((result.path / "export.json").read_text())
            for artifact, score in manifest.get("scores", {}).items():
                if any(row["artifact"] == artifact for row in rows):
                    continue  # every TFLite export also holds the float32 model.tflite
                rows.append({"format": format, "artifact": artifact, "size_kib": round(_size(result.files, artifact) / 1024, 1),
                             "accuracy": round(score["accuracy"], 4), "keras_accuracy": round(score["keras_accuracy"], 4),
                             "top1_agreement": round(score["top1_agreement"], 4),
                             "mean_abs_prob_diff": float(f"{score['mean_abs_prob_diff']:.3g}"),
                             "validation_images": score["images"], "export_seconds": round(seconds, 1)})
    results = {"command": "python benchmarks/export_formats.py " + " ".join(sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d %H:%M"), "run": str(Path(args.run)), "results": rows,
               "notes": "One trained model exported in each format; scores on the run's validation images, "
                        "agreement and mean |dp| against model.keras on the same images."}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _size(files: dict[str, int], artifact: str) -> int:
    """An artifact's bytes; a SavedModel's are its graph and variables (not the shipped recipe)."""
    if artifact == "saved_model":
        return files["saved_model.pb"] + files["variables"]
    return files[artifact]


if __name__ == "__main__":
    main()
