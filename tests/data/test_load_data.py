import json
from pathlib import Path

import numpy as np
import pytest

from restransfer.data import load_data
from restransfer.errors import ConfigError, DataError
from tests.data.conftest import break_folder, image_bytes, make_folder, write


def _epoch(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_digits_quickstart_counts_and_labels():
    data = load_data(source="digits", classes=[5, 6, 7, 8, 9], per_class=10, val_per_class=20,
                     image_size=32, batch_size=16, seed=3)
    assert data.class_names == ["5", "6", "7", "8", "9"]
    assert (data.num_train, data.num_val) == (50, 100)
    assert data.report.counts == {"train": [10] * 5, "val": [20] * 5}
    x, y = _epoch(data.train_unaugmented)
    assert x.shape == (50, 32, 32, 3) and x.dtype == np.float32
    assert y.dtype == np.float32 and (y.sum(1) == 1).all() and (y.sum(0) == 10).all()
    assert 0 <= x.min() and x.max() == pytest.approx(255, abs=1) and x.max() <= 255
    vx, vy = _epoch(data.val)
    assert vx.shape == (100, 32, 32, 3) and (vy.sum(0) == 20).all()


def test_digits_are_the_real_sklearn_images_and_seeded():
    from sklearn.datasets import load_digits

    digits = load_digits()
    a = load_data(source="digits", classes=[7, 1], per_class=3, val_per_class=2, image_size=8,
                  batch_size=100, seed=0)
    b = load_data(source="digits", classes=[7, 1], per_class=3, val_per_class=2, image_size=8,
                  batch_size=100, seed=0)
    va, ya = _epoch(a.val)
    vb, _ = _epoch(b.val)
    np.testing.assert_array_equal(va, vb)
    # At 8x8 the resize is the identity: each image is a real digit scaled by 255/16.
    references = digits.images * 255 / 16
    for image, label in zip(va, ya.argmax(1)):
        digit = [7, 1][label]
        errors = np.abs(references[digits.target == digit] - image[..., 0]).max(axis=(1, 2))
        assert errors.min() < 1e-3
    assert load_data(source="digits", seed=0).num_train + load_data(
        source="digits", seed=0).num_val == 1797


def test_digits_asking_for_too_many_names_the_digit():
    with pytest.raises(DataError, match="digit 5 has 182 images"):
        load_data(source="digits", classes=[5, 6], per_class=150, val_per_class=40)


def test_arrays_grayscale_uint8_and_float():
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (12, 10, 10), dtype=np.uint8)  # NHW grayscale
    x_val = rng.random((4, 10, 10, 3)).astype(np.float32) * 255
    data = load_data(source="arrays", x_train=x_train, y_train=np.arange(12) % 3,
                     x_val=x_val, y_val=np.array([0, 1, 2, 2]),
                     class_names=["a", "b", "c"], image_size=10, batch_size=5)
    assert data.class_names == ["a", "b", "c"] and data.num_train == 12
    vx, vy = _epoch(data.val)
    np.testing.assert_allclose(vx, x_val, atol=1e-3)  # same size: untouched, float32 exact
    np.testing.assert_array_equal(vy.argmax(1), [0, 1, 2, 2])
    tx, _ = _epoch(data.train)
    assert (tx[..., 0] == tx[..., 2]).all()  # grayscale repeated to RGB


def test_arrays_bad_input_names_the_problem():
    x = np.zeros((4, 8, 8, 3), np.float32) + 0.5
    with pytest.raises(DataError, match="0..1"):
        load_data(source="arrays", x_train=x, y_train=np.arange(4) % 2, x_val=x,
                  y_val=np.arange(4) % 2)
    with pytest.raises(DataError, match="y_val has 3 labels|x_val has 4 images"):
        load_data(source="arrays", x_train=x * 255, y_train=np.arange(4) % 2, x_val=x * 255,
                  y_val=np.arange(3) % 2)
    poisoned = x * 255
    poisoned[2, 1, 1, 0] = np.nan
    with pytest.raises(DataError, match=r"x_train has NaN or infinite pixels in images \[2\]"):
        load_data(source="arrays", x_train=poisoned, y_train=np.arange(4) % 2, x_val=x * 255,
                  y_val=np.arange(4) % 2)
    with pytest.raises(ConfigError, match="batch_size"):
        load_data(source="digits", batch_size=0)


def test_folder_with_every_format_loads(messy_folder, tmp_path):
    data = load_data(source="folder", path=messy_folder, validation_split=0.25, image_size=24,
                     batch_size=4, seed=1, run_dir=tmp_path / "run")
    assert data.class_names == ["cat", "dog"]
    assert data.num_train + data.num_val == 8 + 3 + 4
    report = data.report
    assert report.ok and report.files_checked == 15
    problems = {(Path(i.path).name, i.problem.split(" (")[0]) for i in report.warnings}
    assert ("liar.jpg", "extension says JPEG but the file is PNG") in problems
    assert ("cmyk.jpg", "CMYK JPEG") in problems
    assert ("rgba.png", "has an alpha channel") in problems
    assert ("gray.jpg", "grayscale") in problems
    assert sorted(Path(p).name for p in report.ignored["hidden"]) == [".DS_Store", ".hidden"]
    assert [Path(p).name for p in report.ignored["not an image"]] == ["notes.txt"]
    x, y = _epoch(data.train)
    assert x.shape[1:] == (24, 24, 3) and len(x) == data.num_train


def test_stratified_split_is_seeded_and_keeps_every_class(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 10, "b": 3, "c": 2})
    first = load_data(source="folder", path=root, validation_split=0.3, image_size=8, seed=5)
    again = load_data(source="folder", path=root, validation_split=0.3, image_size=8, seed=5)
    assert first.report.counts == {"train": [7, 2, 1], "val": [3, 1, 1]}
    np.testing.assert_array_equal(_epoch(first.val)[0], _epoch(again.val)[0])
    other = load_data(source="folder", path=root, validation_split=0.3, image_size=8, seed=6)
    assert not np.array_equal(_epoch(first.val)[0], _epoch(other.val)[0])


def test_single_image_class_cannot_be_split(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 5, "lonely": 1})
    with pytest.raises(DataError, match="class 'lonely' has 1 image"):
        load_data(source="folder", path=root, validation_split=0.2)


def test_empty_class_folder_stops(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 3, "b": 3})
    val = make_folder(tmp_path / "v", {"a": 1, "b": 1})
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="empty: class has no training images"):
        load_data(source="folder", path=root, val_path=val)


def test_bad_files_stop_before_training_by_default(messy_folder):
    broken = break_folder(messy_folder)
    with pytest.raises(DataError) as info:
        load_data(source="folder", path=messy_folder, validation_split=0.25, image_size=16)
    message = str(info.value)
    assert "3 problem(s)" in message and "skip_bad: true" in message
    for path in broken.values():
        assert str(path) in message
    assert "corrupt or truncated" in message and "empty file" in message
    assert "not an image" in message


def test_skip_bad_trains_without_them_and_records_them(messy_folder, tmp_path):
    broken = break_folder(messy_folder)
    run = tmp_path / "run"
    data = load_data(source="folder", path=messy_folder, validation_split=0.25, image_size=16,
                     batch_size=64, skip_bad=True, run_dir=run)
    assert data.num_train + data.num_val == 15
    x, _ = _epoch(data.train)
    assert len(x) == data.num_train  # nothing dropped at run time
    record = json.loads((run / "data_skipped.json").read_text())
    assert sorted(s["path"] for s in record["skipped"]) == sorted(map(str, broken.values()))


def test_val_folder_and_test_folder(tmp_path):
    train = make_folder(tmp_path / "train", {"x": 3, "y": 3})
    val = make_folder(tmp_path / "val", {"x": 2, "y": 1}, seed=50)
    test = make_folder(tmp_path / "test", {"y": 2}, seed=90)
    data = load_data(source="folder", path=train, val_path=val, test_path=test, image_size=8)
    assert (data.num_train, data.num_val, data.num_test) == (6, 3, 2)
    _, ty = _epoch(data.test)
    assert (ty.argmax(1) == 1).all()  # labels follow the training class order
    bad = make_folder(tmp_path / "val2", {"x": 1, "zebra": 1}, seed=70)
    with pytest.raises(DataError, match="zebra"):
        load_data(source="folder", path=train, val_path=bad)


def test_csv_source_paths_relative_to_the_csv(tmp_path):
    for i in range(6):
        write(tmp_path / "imgs" / f"{i}.png", image_bytes("PNG", seed=i))
    rows = "path,label\n" + "".join(f"imgs/{i}.png,{label}\n" for i, label in
                                    enumerate(["red", "blue", "red", "blue"]))
    (tmp_path / "train.csv").write_text(rows)
    (tmp_path / "val.csv").write_text("imgs/4.png,red\nimgs/5.png,blue\n")
    data = load_data(source="csv", path=tmp_path / "train.csv", val_path=tmp_path / "val.csv",
                     image_size=12, batch_size=8)
    assert data.class_names == ["blue", "red"] and (data.num_train, data.num_val) == (4, 2)
    _, vy = _epoch(data.val)
    np.testing.assert_array_equal(vy.argmax(1), [1, 0])


def test_tfds_with_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        data = load_data(source="tfds", name="beans", train_split="train[:75%]",
                         val_split="validation", image_size=16, batch_size=4,
                         data_dir=tmp_path)
        x, y = _epoch(data.train)
    assert data.class_names == ["angular_leaf_spot", "bean_rust", "healthy"]
    assert x.shape == (data.num_train, 16, 16, 3) and y.shape == (data.num_train, 3)
    assert data.num_val == 12


def test_augmentation_changes_train_every_epoch_but_never_val():
    kwargs = dict(source="digits", classes=[0, 1], per_class=8, val_per_class=8, image_size=16,
                  batch_size=32, shuffle_buffer=1)
    plain = load_data(**kwargs)
    augmented = load_data(**kwargs, augment={"flip": True, "rotation": 20, "zoom": 0.2,
                                             "random_resized_crop": True, "color_jitter": 0.3,
                                             "rand_augment": True, "mixup": 0.4, "cutmix": 1.0})
    np.testing.assert_array_equal(_epoch(plain.val)[0], _epoch(augmented.val)[0])
    e1, y1 = _epoch(augmented.train)
    e2, _ = _epoch(augmented.train)
    base, _ = _epoch(plain.train)
    assert not np.allclose(e1, base) and not np.allclose(e1, e2)
    assert e1.min() >= 0 and e1.max() <= 255 and e1.dtype == np.float32
    np.testing.assert_allclose(y1.sum(1), 1.0, atol=1e-5)
    assert ((y1 > 0) & (y1 < 1)).any()  # MixUp/CutMix soft labels


@pytest.mark.parametrize("source", ["digits", "folder", "folder-uncached"])
def test_a_small_last_training_batch_is_left_out_and_every_image_still_trains(source, tmp_path):
    # 50 images at batch 16: 16, 16, 16 and a 2-image batch, which is left out of each epoch.
    if source == "digits":
        data = load_data(source="digits", classes=[5, 6, 7, 8, 9], per_class=10, val_per_class=4,
                         image_size=8, batch_size=16, seed=1)
    else:
        root = make_folder(tmp_path / "d", {"a": 25, "b": 25}, size=(8, 8))
        data = load_data(source="folder", path=root, val_path=make_folder(tmp_path / "v", {"a": 1, "b": 1}),
                         image_size=8, batch_size=16, cache="none" if source.endswith("uncached") else "memory")
    assert (data.train_batches, data.train_left_out) == (3, 2)
    seen = set()
    for _ in range(6):
        sizes, images = [], []
        for x, _ in data.train:
            sizes.append(len(x))
            images += [im.tobytes() for im in x.numpy()]
        assert sizes == [16, 16, 16]
        seen |= set(images)
    assert len(seen) == 50  # another two images are left out each epoch
    x, y = _epoch(data.train_unaugmented)
    assert len(x) == 50 and {im.tobytes() for im in x} == seen


def test_training_batches_rule():
    from restransfer.data.pipeline import training_batches

    assert training_batches(50, 16) == (3, 2)  # 2 < 8: left out
    assert training_batches(56, 16) == (4, 0)  # 8 is half a batch: kept
    assert training_batches(48, 16) == (3, 0)
    assert training_batches(10, 16) == (1, 0)  # smaller than a batch: the whole set is one batch


def test_the_unaugmented_pass_has_no_augmentation():
    kwargs = dict(source="digits", classes=[0, 1], per_class=8, val_per_class=8, image_size=16, batch_size=4)
    plain = load_data(**kwargs)
    augmented = load_data(**kwargs, augment={"flip": True, "rotation": 20})
    order = lambda x: np.argsort([im.tobytes() for im in x])  # noqa: E731
    a, b = _epoch(plain.train_unaugmented)[0], _epoch(augmented.train_unaugmented)[0]
    np.testing.assert_array_equal(a[order(a)], b[order(b)])
    assert not np.array_equal(np.sort(_epoch(augmented.train)[0], axis=None), np.sort(a, axis=None))


def test_cache_modes(tmp_path):
    kwargs = dict(source="digits", classes=[0, 1], per_class=4, val_per_class=4, image_size=8,
                  batch_size=8)
    assert load_data(**kwargs).cache == {"train": "memory", "val": "memory"}
    data = load_data(**kwargs, cache="file", run_dir=tmp_path)
    first, second = _epoch(data.val)[0], _epoch(data.val)[0]
    np.testing.assert_array_equal(first, second)
    assert any((tmp_path / "cache").iterdir())
    with pytest.raises(ConfigError, match="run_dir"):
        load_data(**kwargs, cache="file")
    assert load_data(**kwargs, cache="none").cache["train"] == "none"


def test_file_broken_after_the_check_is_dropped_and_counted(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 4, "b": 4})
    data = load_data(source="folder", path=root, validation_split=0.25, image_size=8,
                     batch_size=3, cache="none")
    victim = next(p for p in sorted((root / "a").iterdir()))
    victim.write_bytes(b"broken after the check")
    x, _ = _epoch(data.train)
    vx, _ = _epoch(data.val)
    assert len(x) + len(vx) == 7 and data.dropped_at_runtime() == 1
    assert sum(data.dropped_by_part().values()) == 1 and set(data.dropped_by_part()) == {"train", "val"}


def test_bilinear_resize_gives_exactly_keras_image_dataset_from_directory(tmp_path):
    # data.resize: bilinear is Keras' own preprocessing, pixel for pixel: validation images
    # equal image_dataset_from_directory's; training images are them rounded to uint8.
    import keras

    root = make_folder(tmp_path / "d", {"a": 3, "b": 3}, size=(70, 45))
    keras_images = np.concatenate([x.numpy() for x, _ in keras.utils.image_dataset_from_directory(
        root, image_size=(24, 20), shuffle=False, verbose=False)])
    data = load_data(source="folder", path=root, val_path=root, image_size=[24, 20],
                     batch_size=4, resize="bilinear")
    val = np.concatenate([x.numpy() for x, _ in data.val])
    np.testing.assert_array_equal(val, keras_images)
    train = np.concatenate([x.numpy() for x, _ in data.train])
    assert sorted(map(bytes, train)) == sorted(map(bytes, np.round(keras_images)))
    area = load_data(source="folder", path=root, val_path=root, image_size=[24, 20], batch_size=4)
    assert np.abs(np.concatenate([x.numpy() for x, _ in area.val]) - keras_images).max() > 1


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_an_augmented_epoch_depends_on_its_number_not_on_the_passes_before(cache, tmp_path):
    # What a resumed run relies on: a new bundle (a new process) set to epoch 2 yields exactly
    # the batches the first bundle yielded in its third pass, flips and crops included.
    from restransfer.training.seeds import reseed

    root = make_folder(tmp_path / "d", {"a": 6, "b": 6}, size=(12, 12))
    kwargs = dict(source="folder", path=root, validation_split=0.25, image_size=12, batch_size=3, seed=7,
                  cache=cache, augment={"flip": "horizontal", "random_resized_crop": True, "mixup": 0.4})

    def epoch(data, number):
        data.epoch.assign(number)
        reseed([data.augment.random_parts], 7, number)
        return _epoch(data.train)

    first = load_data(**kwargs)
    passes = [epoch(first, number) for number in range(3)]
    again = load_data(**kwargs)
    for number in (2, 0, 2):
        x, y = epoch(again, number)
        np.testing.assert_array_equal(x, passes[number][0])
        np.testing.assert_array_equal(y, passes[number][1])
    assert not np.array_equal(passes[1][1], passes[2][1])  # another order each epoch
    assert int(again.epoch.numpy()) == 3  # a pass advances the counter: unset, the next epoch follows
    unaugmented = [_epoch(again.train_unaugmented)[0] for _ in range(2)]
    np.testing.assert_array_equal(unaugmented[0], unaugmented[1])  # the precise-BN pass keeps one order


def test_calibration_holdout_splits_each_class_of_the_validation_images_in_two():
    data = load_data(source="digits", classes=[5, 6, 7], per_class=4, val_per_class=7, image_size=16, batch_size=4,
                     seed=1, calibration_holdout=0.5)
    everything, everything_labels = _epoch(data.val)
    halves = [_epoch(ds) for ds in (data.val_monitor, data.val_calibration)]
    assert data.num_val == 21 and data.num_val_calibration == 9
    assert [labels.sum(0).tolist() for _, labels in halves] == [[4, 4, 4], [3, 3, 3]]  # floor(7 / 2) held out
    # Disjoint, and together every validation image once.
    rows = [{image.tobytes() for image in images} for images, _ in halves]
    assert not rows[0] & rows[1] and rows[0] | rows[1] == {image.tobytes() for image in everything}
    again = load_data(source="digits", classes=[5, 6, 7], per_class=4, val_per_class=7, image_size=16, batch_size=4,
                      seed=1, calibration_holdout=0.5)
    np.testing.assert_array_equal(_epoch(again.val_calibration)[0], halves[1][0])  # seeded: a resume reads the same
    assert load_data(source="digits", classes=[5, 6], per_class=2, val_per_class=2, image_size=16).val_monitor is None


def test_calibration_holdout_with_one_validation_image_per_class_names_the_fix():
    with pytest.raises(DataError, match="every class has a single validation image.*calibration: none"):
        load_data(source="digits", classes=[5, 6], per_class=2, val_per_class=1, image_size=16,
                  calibration_holdout=0.5)
