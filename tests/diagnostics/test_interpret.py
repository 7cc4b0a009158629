import csv

import numpy as np
import pytest
from PIL import Image

from restransfer.diagnostics.evaluation import confusion_matrix, per_image_loss
from restransfer.diagnostics.interpret import interpret_predictions, most_confused, top_losses
from restransfer.errors import ConfigError

NAMES = ["cat", "dog", "fox"]


def predictions():
    probabilities = np.array([
        [0.90, 0.05, 0.05],  # cat, right
        [0.10, 0.80, 0.10],  # cat seen as dog: loss -log 0.1
        [0.20, 0.70, 0.10],  # dog, right
        [0.01, 0.04, 0.95],  # dog seen as fox: loss -log 0.04, the worst
        [0.30, 0.62, 0.08],  # fox seen as dog: loss -log 0.08
        [0.50, 0.20, 0.30],  # cat seen... right (cat)
    ], dtype=np.float32)
    return probabilities, np.array([0, 0, 1, 1, 2, 0])


def test_top_losses_are_the_highest_cross_entropies_in_order():
    probabilities, labels = predictions()
    rows = top_losses(probabilities, labels, NAMES, n=3, paths=[f"{i}.jpg" for i in range(6)])
    assert [r.index for r in rows] == [3, 4, 1]
    assert [r.path for r in rows] == ["3.jpg", "4.jpg", "1.jpg"]
    assert (rows[0].true, rows[0].predicted) == ("dog", "fox")
    assert rows[0].probability == pytest.approx(0.95) and rows[0].true_probability == pytest.approx(0.04)
    assert rows[0].loss == pytest.approx(-np.log(0.04), rel=1e-6)
    # The same loss Keras computes.
    import keras

    expected = keras.losses.categorical_crossentropy(np.eye(3)[labels], probabilities)
    np.testing.assert_allclose(per_image_loss(probabilities, labels), np.asarray(expected), rtol=1e-5)
    assert top_losses(probabilities, labels, NAMES, n=1)[0].path == "val[3]"


def test_most_confused_pairs_by_count_match_scikit_learn():
    from sklearn.metrics import confusion_matrix as reference

    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([1, 1, 0, 2, 1, 0, 1, 0, 2])
    matrix = confusion_matrix(labels, predicted, 3)
    np.testing.assert_array_equal(matrix, reference(labels, predicted, labels=[0, 1, 2]))
    assert most_confused(matrix, NAMES) == [("cat", "dog", 2), ("fox", "cat", 2), ("dog", "fox", 1),
                                            ("fox", "dog", 1)]
    assert most_confused(matrix, NAMES, min_count=2) == [("cat", "dog", 2), ("fox", "cat", 2)]
    with pytest.raises(ConfigError, match="square matrix"):
        most_confused(matrix, NAMES[:2])


def test_interpret_writes_the_png_and_both_csvs(tmp_path):
    probabilities, labels = predictions()
    images = np.stack([np.full((32, 32, 3), 40 * i, np.float32) for i in range(6)])
    asked = []

    def load(indices):
        asked.append(list(indices))
        return images[indices]

    result = interpret_predictions(probabilities, labels, NAMES, images=load, out_dir=tmp_path, n=4,
                       paths=[f"{NAMES[k]}/{i}.jpg" for i, k in enumerate(labels)])
    assert asked == [[3, 4, 1, 5]]  # only the shown images are loaded
    assert Image.open(result.files["top_losses_png"]).size[0] >= 400
    with open(result.files["top_losses_csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == ["dog/3.jpg", "fox/4.jpg", "cat/1.jpg", "cat/5.jpg"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert (rows[0]["true"], rows[0]["predicted"]) == ("dog", "fox")
    assert float(rows[0]["loss"]) == pytest.approx(-np.log(0.04), rel=1e-5)
    with open(result.files["most_confused_csv"], newline="") as f:
        pairs = list(csv.DictReader(f))
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("cat", "dog", "1"), ("dog", "fox", "1"), ("fox", "dog", "1")]
    assert pairs[0]["share_of_true"] == "0.3333"  # 1 of the 3 cats
    assert sorted(p.name for p in tmp_path.iterdir()) == ["most_confused.csv", "top_losses.csv",
                                                          "top_losses.png"]


def test_bad_input_is_named():
    probabilities, labels = predictions()
    with pytest.raises(ConfigError, match="one path per image"):
        top_losses(probabilities, labels, NAMES, paths=["a.jpg"])
    with pytest.raises(ConfigError, match="must match"):
        top_losses(probabilities[:2], labels, NAMES)
    with pytest.raises(ConfigError, match="n must be a positive"):
        top_losses(probabilities, labels, NAMES, n=0)


def test_interpret_model_names_validation_files_relative_to_the_dataset_root(tmp_path, monkeypatch):
    from restransfer.data import load_data
    from restransfer.diagnostics.interpret import dataset_images, interpret_model
    from restransfer.models import create_model
    from tests.data.conftest import make_folder

    monkeypatch.setenv("RESTRANSFER_CACHE_DIR", str(tmp_path / "check-cache"))
    root = make_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    data = load_data(source="folder", path=root, validation_split=0.5, image_size=32, batch_size=4, seed=0)
    assert len(data.paths["val"]) == data.num_val == 6
    assert all(p.split("/")[0] in ("cat", "dog") and (root / p).is_file() for p in data.paths["val"])
    model = create_model("cifar_resnet20", num_classes=2, input_shape=(32, 32, 3), preprocessing="torch")
    result = interpret_model(model, data.val, data.class_names, out_dir=tmp_path / "plots",
                             paths=data.paths["val"], n=3)
    assert [row.path for row in result.top_losses] == [data.paths["val"][row.index] for row in result.top_losses]
    assert [row.true for row in result.top_losses] == [row.path.split("/")[0] for row in result.top_losses]
    # The images shown are the ones the rows name, in the order of the rows.
    from restransfer.diagnostics.arrays import dataset_arrays

    images, _ = dataset_arrays(data.val)
    indices = [row.index for row in result.top_losses]
    np.testing.assert_array_equal(dataset_images(data.val, indices), images[indices])
    probabilities = model.predict(images, verbose=0)
    expected = per_image_loss(probabilities, np.array([data.class_names.index(p.split("/")[0])
                                                       for p in data.paths["val"]]))
    assert [row.loss for row in result.top_losses] == pytest.approx(sorted(expected, reverse=True)[:3], rel=1e-5)
