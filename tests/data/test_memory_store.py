import numpy as np
import pytest
import tensorflow as tf

from restransfer.data import load_data
from restransfer.data.image_ops import decode_image, resize_for_eval
from restransfer.data.memory_store import (
    ImageStore,
    epoch_counter,
    shuffled_per_epoch,
    shuffled_range,
    stored_training_dataset,
)
from tests.data.conftest import make_folder


def _indexed(count: int, batch_size: int = 4, seed: int = 0, shuffle_buffer=None, min_batch: int = 1, epoch=None):
    """A store whose image ``i`` is filled with the value ``i``, so images name their slot."""
    store = ImageStore(count, (2, 2), tf.float32)
    decoded = tf.Variable(0, dtype=tf.int64)

    def load(index):
        with tf.control_dependencies([decoded.assign_add(1)]):
            return tf.fill([2, 2, 3], tf.cast(index, tf.float32))

    ds = stored_training_dataset(store, np.arange(count) % 3, load, batch_size, seed=seed,
                                 shuffle_buffer=shuffle_buffer, min_batch=min_batch, epoch=epoch)
    return store, decoded, ds


def _order(ds) -> list[int]:
    order = []
    for images, labels in ds:
        slots = images.numpy()[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(labels.numpy(), slots % 3)  # labels follow their image
        order += slots.tolist()
    return order


def test_every_epoch_is_a_new_permutation_and_files_decode_once():
    store, decoded, ds = _indexed(40)
    epochs = [_order(ds) for _ in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(40))
    assert len({tuple(order) for order in epochs}) == 3
    assert int(decoded.numpy()) == 40 and store.num_filled() == 40


def test_small_last_batch_is_left_out_but_stored_while_streaming():
    store, decoded, ds = _indexed(42, batch_size=8, min_batch=8)
    first = _order(ds)  # streaming: 42 decoded and stored, 40 yielded
    assert len(first) == 40 and store.num_filled() == 42 and int(decoded.numpy()) == 42
    later = [_order(ds) for _ in range(4)]  # from the store: 5 batches of 8, nothing decoded
    assert all(len(order) == 40 for order in later) and int(decoded.numpy()) == 42
    assert set().union(first, *later) == set(range(42))


def test_first_batch_leaves_before_the_whole_set_is_decoded():
    # A whole-set shuffle buffer would decode all 512 images before the first batch.
    store, decoded, ds = _indexed(512)
    next(iter(ds))
    assert store.num_filled() < 256 and int(decoded.numpy()) < 256


def test_an_interrupted_epoch_is_completed_by_the_next():
    store, decoded, ds = _indexed(64)
    for _ in ds.take(2):
        pass
    assert 0 < store.num_filled() < 64
    assert sorted(_order(ds)) == list(range(64))  # streams again, every slot once
    assert store.num_filled() == 64
    before = int(decoded.numpy())
    assert sorted(_order(ds)) == list(range(64))
    assert int(decoded.numpy()) == before  # complete: nothing decoded any more


def test_order_depends_on_the_seed():
    first, second, other = _indexed(30)[2], _indexed(30)[2], _indexed(30, seed=1)[2]
    assert [_order(first) for _ in range(2)] == [_order(second) for _ in range(2)]
    assert _order(other) != _order(_indexed(30)[2])
    assert _order(_indexed(30, shuffle_buffer=1)[2]) == list(range(30))  # no shuffling


def test_an_epochs_order_is_decided_by_its_number_alone():
    # A resumed run's new process must shuffle epoch k as the uninterrupted process did.
    counter = epoch_counter()
    ds = _indexed(30, seed=4, epoch=counter)[2]
    in_a_row = [_order(ds) for _ in range(3)]  # the counter advances with each pass
    assert int(counter.numpy()) == 3 and len({tuple(order) for order in in_a_row}) == 3
    fresh_counter = epoch_counter()
    fresh = _indexed(30, seed=4, epoch=fresh_counter)[2]
    for number in (2, 0, 1):
        fresh_counter.assign(number)
        assert _order(fresh) == in_a_row[number]
    assert _order(_indexed(30, seed=4, epoch=1)[2]) == _order(_indexed(30, seed=4, epoch=1)[2]) == in_a_row[1]
    windowed = _order(_indexed(24, seed=4, shuffle_buffer=8)[2])  # permuted within blocks of 8
    assert [sorted(windowed[i:i + 8]) for i in (0, 8, 16)] == [list(range(i, i + 8)) for i in (0, 8, 16)]
    assert windowed != list(range(24))


def _stored_images(data) -> np.ndarray:
    images = np.concatenate([x.numpy() for x, _ in data.train_unaugmented])  # every image once
    assert images.dtype == np.float32 and len(images) == data.num_train
    return images


@pytest.mark.parametrize("count, buffer", [(15, 15), (16, 4), (15, 4), (1, 1), (200, 3)])
def test_index_order_is_the_order_of_shuffled_images(count, buffer):
    # The store and the feature cache shuffle indices, the other pipelines the images
    # themselves: the same seed and epoch must give both the same order.
    for epoch in (0, 5):
        images = shuffled_per_epoch(tf.data.Dataset.range(count), buffer, 7, epoch)
        indices = shuffled_range(count, buffer, 7, epoch)
        assert [int(i) for i in indices] == [int(i) for i in images]
    counters = epoch_counter(), epoch_counter()
    passes = shuffled_per_epoch(tf.data.Dataset.range(count), buffer, 7, counters[0]), \
        shuffled_range(count, buffer, 7, counters[1])
    orders = [[[int(i) for i in ds] for _ in range(3)] for ds in passes]
    assert orders[0] == orders[1] and int(counters[1].numpy()) == 3
    assert count < 4 or len({tuple(o) for o in orders[1]}) > 1  # each pass a new order


@pytest.mark.parametrize("run", ["first", "later"])
def test_training_images_are_the_evaluation_images_rounded(tmp_path, run):
    # The store holds resize_for_eval(decode_image(file)) rounded to uint8: training sees what
    # evaluation and the exported serving graph see, to half a grey level. A first run's check
    # fills the store; a later run (verdicts cached) fills it while streaming epoch 1.
    root = make_folder(tmp_path / "d", {"a": 5, "b": 5}, size=(53, 41))
    kwargs = dict(source="folder", path=root, validation_split=0.2, image_size=[24, 20],
                  batch_size=3, seed=2)
    data = load_data(**kwargs)
    if run == "later":
        data = load_data(**kwargs)
        assert data.report.files_from_cache == 10
    assert data.cache["train"] == "memory"
    references = np.round(np.stack([
        resize_for_eval(decode_image(tf.io.read_file(str(p))), (24, 20))
        for p in sorted(root.rglob("*.jpg"))]))
    for _ in range(2):
        images = _stored_images(data)
        assert len(images) == 8
        matches = [np.flatnonzero((references == image).all(axis=(1, 2, 3))) for image in images]
        assert all(len(m) == 1 for m in matches)
        assert len({int(m[0]) for m in matches}) == 8  # eight different files


def test_first_run_check_decodes_training_files_into_the_store(tmp_path):
    # Each training file is decoded once on a first run: by the check, straight into the
    # store. Deleting every file after load_data proves epoch 1 reads none of them.
    root = make_folder(tmp_path / "train", {"a": 4, "b": 4})
    val = make_folder(tmp_path / "val", {"a": 1, "b": 1}, seed=50)
    data = load_data(source="folder", path=root, val_path=val, image_size=8, batch_size=3)
    assert data.report.files_checked == 10 and data.report.files_from_cache == 0
    for path in root.rglob("*.jpg"):
        path.unlink()
    first, second = _stored_images(data), _stored_images(data)
    assert len(first) == 8 and data.dropped_at_runtime() == 0
    np.testing.assert_array_equal(np.sort(first, axis=0), np.sort(second, axis=0))


def test_first_run_with_a_skipped_training_file_streams_the_rest(tmp_path):
    # Skipping changes the slots' order, so the prefilled store is dropped, not misread.
    root = make_folder(tmp_path / "train", {"a": 4, "b": 4})
    (root / "a" / "001.jpg").write_bytes(b"broken from the start")
    val = make_folder(tmp_path / "val", {"a": 1, "b": 1}, seed=50)
    data = load_data(source="folder", path=root, val_path=val, image_size=8, batch_size=3,
                     skip_bad=True)
    assert [issue.path for issue in data.report.skipped] == [str(root / "a" / "001.jpg")]
    references = np.round(np.stack([
        resize_for_eval(decode_image(tf.io.read_file(str(p))), (8, 8))
        for p in sorted(root.rglob("*.jpg")) if p.name != "001.jpg" or p.parent.name != "a"]))
    images = _stored_images(data)
    assert len(images) == 7
    assert sorted(int(np.flatnonzero((references == im).all(axis=(1, 2, 3)))[0])
                  for im in images) == list(range(7))


def test_file_broken_after_the_check_is_dropped_and_counted_in_memory(tmp_path):
    root = make_folder(tmp_path / "train", {"a": 4, "b": 4})
    val = make_folder(tmp_path / "val", {"a": 1, "b": 1}, seed=50)
    load_data(source="folder", path=root, val_path=val, image_size=8, batch_size=3)
    # A later run: verdicts come from the cache, so epoch 1 streams the files.
    data = load_data(source="folder", path=root, val_path=val, image_size=8, batch_size=3)
    assert data.cache["train"] == "memory" and data.report.files_from_cache == 10
    (root / "a" / "002.jpg").write_bytes(b"broken after the check")
    # It never reaches the store, so every epoch tries it again, drops it and counts it.
    assert [sum(len(x) for x, _ in data.train) for _ in range(2)] == [7, 7]
    assert data.dropped_at_runtime() == 2
