"""RUN/export/MODEL_CARD.md: written with the run's exports, listing each and how to load it."""

from tests.export.conftest import CLASS_NAMES


def test_model_card_lists_classes_model_and_every_export(exports, run_dir):
    card = (run_dir / "export" / "MODEL_CARD.md").read_text()
    for index, name in enumerate(CLASS_NAMES):
        assert f"{index}. {name}" in card
    assert "backbone: `cifar_resnet20`" in card
    assert "32x32 (height x width)" in card and "RGB 0..255" in card
    assert "- val_accuracy: 1" in card  # from the run's metrics.json
    for folder in ("saved_model", "keras", "tflite"):
        assert f"### `{folder}/` ({folder})" in card
    assert "- `model.dynamic.tflite` (" in card
    assert 'keras.saving.load_model("keras/model.keras")' in card
    # The run's data is not readable here: no counts table is made up.
    assert "## Training data" not in card
