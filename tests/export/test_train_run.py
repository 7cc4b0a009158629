"""A real `restransfer.train` run whose recipe asks for an export: the engine calls export_run."""

import json
from pathlib import Path

import numpy as np

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_recipe_export_section_exports_and_verifies_a_trained_run(tmp_path):
    import restransfer
    from restransfer.export.saved_model import predict_saved_model

    run = restransfer.train(
        RECIPES / "quickstart_scratch.yaml",
        {"phases[0].epochs": 1, "data.per_class": 4, "data.val_per_class": 4, "export": ["saved_model"]},
        out=tmp_path / "run", verbose=0,
    )
    export = run.run_dir / "export" / "saved_model"
    manifest = json.loads((export / "export.json").read_text())
    assert manifest["class_names"] == run.class_names and manifest["samples_source"] == "dataset"
    assert (export / "assets" / "recipe.yaml").read_text() == (run.run_dir / "recipe.yaml").read_text()
    # The SavedModel and the run's Keras model agree on the validation samples stored with it.
    samples = [export / name for name in manifest["samples"]]
    served = predict_saved_model(export, samples, top_k=len(run.class_names))
    reference = np.load(export / "samples" / "reference.npz")["probabilities"]
    for result, row in zip(served, reference):
        probabilities = dict(result["top"])
        np.testing.assert_allclose([probabilities[c] for c in run.class_names], row, atol=1e-4)
    # The model card the export wrote: the data the run was trained on, counted per class.
    card = (run.run_dir / "export" / "MODEL_CARD.md").read_text()
    assert "## Training data" in card
    assert "| split | " + " | ".join(run.class_names) + " |" in card
    for split in ("train", "val"):
        assert f"| {split} | " + " | ".join(["4"] * len(run.class_names)) + " |" in card
