"""`load_data`: a source's listing -> checked files -> fast tf.data pipelines.

Per split: read + decode + `resize_for_eval` in parallel (AUTOTUNE), decoded once when cached,
batch, one-hot labels, prefetch. Training data cached in memory lives in an `ImageStore` (one
tensor; each epoch a new order of indices; on a dataset's first run the check fills it, else the
first epoch streams into it); other training data goes through ``cache`` (file) and a shuffle
buffer. Training batches are augmented every epoch after
the cache; validation and test are never augmented and keep their order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from restransfer.data.augment import Augment, build_augment
from restransfer.data.check import DataReport, check_listing, dataset_root, file_decode_errors
from restransfer.data.image_ops import decode_image, resize_for_eval
from restransfer.data.memory_store import (
    ImageStore,
    do_not_convert,
    epoch_counter,
    fill_store,
    shuffled_per_epoch,
    stored_training_dataset,
)
from restransfer.data.schema import DataConfig
from restransfer.data.sources import (
    Listing,
    Part,
    arrays_listing,
    csv_listing,
    digits_listing,
    folder_listing,
    held_out_per_class,
    tfds_listing,
)
from restransfer.errors import ConfigError, DataError

# A shuffled epoch's last training batch smaller than this share of the batch size is left out.
SMALL_LAST_BATCH = 0.5
# "auto" caches in memory when the decoded split takes at most this share of free memory.
_MEMORY_SHARE = 0.25
_MEMORY_FALLBACK_BYTES = 2 << 30


@dataclass
class DataBundle:
    """What `load_data` returns; datasets yield ``(float32 [B, h, w, 3] 0..255, one-hot)``.

    ``train_batches`` is the number of training batches per epoch and ``train_left_out`` the
    images each epoch leaves out (`training_batches`); ``train_unaugmented`` yields every
    training image once, without augmentation (the precise-BN pass), in the same order on
    every pass.

    What decides a training epoch, so that a resumed run repeats it: ``epoch`` (the epoch whose
    order the next pass over ``train`` takes; each pass advances it) and ``augment``'s random
    generators (`restransfer.training.seeds.reseed`). The engine sets both at each epoch's start.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    class_names: list[str]
    num_train: int
    num_val: int
    report: DataReport
    image_size: tuple[int, int]
    test: tf.data.Dataset | None = None
    num_test: int = 0
    cache: dict[str, str] = field(default_factory=dict)  # part -> memory | file | none
    # part -> each image's file relative to the dataset root, in the split's order (None for
    # in-memory and TFDS data): what top losses and reports show.
    paths: dict[str, list[str] | None] = field(default_factory=dict)
    train_batches: int = 0
    train_left_out: int = 0
    train_unaugmented: tf.data.Dataset | None = None
    # With ``calibration_holdout``: the validation images split in two (each class's share held
    # out, seeded); ``val`` stays all of them.
    val_monitor: tf.data.Dataset | None = None
    val_calibration: tf.data.Dataset | None = None
    num_val_calibration: int = 0
    counters: dict[str, _DropCounter] = field(default_factory=dict, repr=False)
    counts: dict[str, list[int]] = field(default_factory=dict)  # part -> images per class, as loaded
    # Labels are 0/1 rows (several labels per image) rather than one-hot classes.
    multi_label: bool = False
    epoch: tf.Variable | None = field(default=None, repr=False)
    augment: Augment | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def dropped_at_runtime(self) -> int:
        """Images that failed to decode during iteration (0 unless files changed after the check).

        Summed over epochs (a broken training file never reaches the memory store, so each
        epoch tries and drops it again); exact at the end of an epoch. The engine should log
        it when it is not zero.
        """
        return sum(self.dropped_by_part().values())

    def dropped_by_part(self) -> dict[str, int]:
        """`dropped_at_runtime` per split, summed over every pass through it (epochs, validation)."""
        return {name: counter.dropped() for name, counter in self.counters.items()}


class _DropCounter:
    """Counts elements entering and leaving the decode step; the difference was dropped."""

    def __init__(self) -> None:
        with tf.device("/CPU:0"):  # updated inside tf.data functions, which run on the host
            self.entered = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.left = tf.Variable(0, dtype=tf.int64, trainable=False)

    def dropped(self) -> int:
        return int(self.entered.numpy() - self.left.numpy())


def training_batches(num_images: int, batch_size: int) -> tuple[int, int]:
    """``(batches per epoch, images left out per epoch)`` of a shuffled training split.

    A last batch smaller than half the batch size is left out: its BatchNorm statistics come
    from a handful of images (2 of 50 at batch 16) and its noisy gradient step weighs as much as
    a full one. The order is new every epoch, so each epoch leaves out other images and every
    image is trained on. A split smaller than one batch is one batch.

    Example:
        >>> training_batches(50, 16), training_batches(56, 16), training_batches(10, 16)
        ((3, 2), (4, 0), (1, 0))
    """
    full, rest = divmod(num_images, batch_size)
    if full and 0 < rest < SMALL_LAST_BATCH * batch_size:
        return full, rest
    return full + (rest > 0), 0


def load_data(*, seed: int = 0, run_dir: Path | str | None = None, calibration_holdout: float = 0.0,
              **kwargs: Any) -> DataBundle:
    """Load a dataset as batched tf.data pipelines, after checking every file.

    Args:
        seed: seed of the split, the shuffle and the augmentation.
        run_dir: the run folder: file cache (``cache: file``) and ``data_skipped.json`` go here.
        calibration_holdout: the share of each class's validation images held out in
            ``val_calibration`` (the rest in ``val_monitor``), so that a temperature is fitted on
            images that did not choose the kept epoch; 0 splits nothing. Listed sources only.
        **kwargs: the fields of :class:`DataConfig` (``source``, ``image_size``, ...); for
            ``source="arrays"`` also ``x_train, y_train, x_val, y_val, class_names``.

    Returns:
        A :class:`DataBundle`.

    Raises:
        ConfigError: an option has a bad value.
        DataError: files are missing, unreadable or leave a class without images (the message
            lists the files; ``skip_bad=True`` trains without unreadable files instead).

    Example:
        >>> data = load_data(source="digits", classes=[5, 6, 7, 8, 9], per_class=10,
        ...                  image_size=32, batch_size=16)
        >>> images, labels = next(iter(data.train))
    """
    from pydantic import ValidationError

    from restransfer.validation import config_error

    kwargs.setdefault("source", "digits")
    try:
        config = DataConfig.model_validate(kwargs, context={"base_dir": Path.cwd()}).root
    except ValidationError as error:
        raise config_error(error, DataConfig, "load_data's options", prefix=("data",)) from None
    run_dir = Path(run_dir) if run_dir is not None else None
    listing = make_listing(config, seed)
    size = tuple(config.image_size)
    plans = {name: _cache_plan(config.cache, part, size, name == "train", run_dir)
             for name, part in listing.parts.items()}
    load_file = (_file_loader(size, config.resize)
                 if any(p.paths is not None for p in listing.parts.values()) else None)
    train = listing.parts["train"]
    store = None
    if plans["train"][0] == "memory" and train.paths is not None:
        # Created before the check so that a first run's check decodes each training file
        # once, straight into the store, instead of once for the check and again in epoch 1.
        store = _new_store(len(train), size, as_uint8=plans["train"][1])
        report = check_listing(listing, skip_bad=config.skip_bad,
                               decode_errors=_filling_decoder(train, store, load_file))
    else:
        report = check_listing(listing, skip_bad=config.skip_bad)
    if store is not None and any(issue.part == "train" for issue in report.skipped):
        store = None  # slots follow the listing's order, which skipping changes
    listing = report.usable_listing(listing)
    if store is None and plans["train"][0] == "memory" and listing.parts["train"].dataset is None:
        # One store for the training batches and the un-augmented pass.
        store = _new_store(len(listing.parts["train"]), size, as_uint8=plans["train"][1])
    if run_dir is not None and report.skipped:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "data_skipped.json").write_text(json.dumps(report.skipped_json(), indent=2))
    augment = build_augment(config.augment, size, seed)
    epoch = epoch_counter()
    num_classes = len(listing.class_names)

    def loader(part: Part) -> Callable[[tf.Tensor], tf.Tensor]:
        return load_file if part.paths is not None else _array_loader(size, config.resize)

    datasets, counters = {}, {}
    for name, part in listing.parts.items():
        counters[name] = _DropCounter() if part.paths is not None else None
        cache, as_uint8 = plans[name]
        datasets[name] = build_dataset(
            part, loader(part), num_classes, size, config.batch_size, training=name == "train",
            augment=augment if name == "train" else None, cache=cache,
            cache_path=_cache_path(run_dir, name, part, size, config) if cache == "file" else None,
            shuffle_buffer=config.shuffle_buffer, seed=seed, epoch=epoch, counter=counters[name],
            as_uint8=as_uint8, store=store if name == "train" else None, drop_small_last=name == "train")
    train = listing.parts["train"]
    cache, as_uint8 = plans["train"]
    unaugmented = build_dataset(
        train, loader(train), num_classes, size,
        config.batch_size, training=True, cache="none" if cache == "memory" and store is None else cache,
        cache_path=_cache_path(run_dir, "train", train, size, config) if cache == "file" else None,
        shuffle_buffer=config.shuffle_buffer, seed=seed, epoch=0, as_uint8=as_uint8, store=store)
    batches, left_out = training_batches(len(train), config.batch_size)
    halves = {}
    if calibration_holdout:
        val = listing.parts["val"]
        held = _calibration_mask(val, calibration_holdout, seed)
        cache, as_uint8 = plans["val"]
        for name, keep in (("val_monitor", ~held), ("val_calibration", held)):
            part = val.subset(keep)
            halves[name] = build_dataset(
                part, loader(part), num_classes, size,
                config.batch_size, training=False, cache=cache, as_uint8=as_uint8, counter=counters["val"],
                cache_path=_cache_path(run_dir, name, part, size, config) if cache == "file" else None)
        halves["num_val_calibration"] = int(held.sum())
    return DataBundle(
        train=datasets["train"], val=datasets["val"], test=datasets.get("test"),
        class_names=listing.class_names, num_train=len(listing.parts["train"]),
        num_val=len(listing.parts["val"]), num_test=len(listing.parts.get("test", ())),
        report=report, image_size=size, cache={name: plan[0] for name, plan in plans.items()},
        counters={k: v for k, v in counters.items() if v is not None}, paths=_relative_paths(listing),
        train_batches=batches, train_left_out=left_out, train_unaugmented=unaugmented, counts=listing.counts(),
        multi_label=listing.multi_label, epoch=epoch, augment=augment, **halves)


def _calibration_mask(val: Part, share: float, seed: int) -> np.ndarray:
    """`held_out_per_class` of the validation part; errors name what cannot be split and the fix."""
    if val.dataset is not None:
        raise ConfigError("calibration_holdout needs validation images that are listed (folder, csv, digits, glyphs, "
                          "arrays); a TFDS source streams them. Fit the temperature on all of them (checkpoint.keep: "
                          "last) or use calibration: none.")
    if val.labels.ndim != 1:
        raise ConfigError("calibration_holdout splits single-label validation images by class; these are multi-label.")
    held = held_out_per_class(val.labels, share, seed)
    if not held.any():
        raise DataError(f"Holding out {share:g} of each class's {len(val)} validation images for the temperature "
                        "leaves none: every class has a single validation image. Add validation images (val_path, "
                        "validation_split, val_per_class), set checkpoint.keep: last, or use calibration: none.")
    return held


def _relative_paths(listing: Listing) -> dict[str, list[str] | None]:
    root = dataset_root(listing)
    return {name: None if part.paths is None else
            [os.path.relpath(p, root) if root is not None else p for p in part.paths]
            for name, part in listing.parts.items()}


def make_listing(config: Any, seed: int) -> Listing:
    """The `Listing` for a validated source model (``DataConfig(...).root``), one fold of it with ``fold``."""
    listing = _source_listing(config, seed)
    fold = getattr(config, "fold", None)
    if fold is None:
        return listing
    from restransfer.data.folds import fold_listing

    return fold_listing(listing, folds=fold.folds, index=fold.index, repeats=fold.repeats, seed=fold.seed)


def _source_listing(config: Any, seed: int) -> Listing:
    if config.source == "folder":
        return folder_listing(config.path, config.val_path, config.test_path,
                              config.validation_split, seed)
    if config.source == "csv":
        return csv_listing(config.path, config.val_path, config.test_path,
                           config.validation_split, seed)
    if config.source == "digits":
        return digits_listing(config.classes, config.per_class, config.val_per_class, seed)
    if config.source == "glyphs":
        from restransfer.data.glyphs import glyphs_listing

        return glyphs_listing(config.classes, config.per_class, config.val_per_class, seed)
    if config.source == "arrays":
        return arrays_listing(config.x_train, config.y_train, config.x_val, config.y_val,
                              config.class_names, config.x_test, config.y_test)
    return tfds_listing(config.name, config.data_dir, config.train_split, config.val_split,
                        config.test_split, config.image_key, config.label_key)


def build_dataset(part: Part, load: Callable[[tf.Tensor], tf.Tensor], num_classes: int,
                  image_size: tuple[int, int], batch_size: int, *, training: bool, augment=None,
                  cache: str = "memory", cache_path: Path | None = None,
                  shuffle_buffer: int | None = None, seed: int = 0, epoch: tf.Variable | int | None = None,
                  counter: _DropCounter | None = None, as_uint8: bool = False,
                  store: ImageStore | None = None, drop_small_last: bool = False) -> tf.data.Dataset:
    """Batched ``(images, one-hot labels)`` for one split (see the module docstring).

    ``load`` maps a path (file parts) or an image (array and TFDS parts) to the float32 image;
    ``store`` is the training split's `ImageStore` (filled by the check, or by the first epoch).
    ``drop_small_last`` leaves out a shuffled epoch's small last batch (`training_batches`).
    ``epoch`` decides a training pass's order (`shuffled_per_epoch`; ``None``: a counter of its
    own, a new order every pass).
    """
    left_out = training_batches(len(part), batch_size)[1] if training and drop_small_last else 0
    if training and cache == "memory" and part.dataset is None:
        ds = _stored(part, load, image_size, batch_size, as_uint8, seed, shuffle_buffer,
                     counter, store, drop_last=bool(left_out), epoch=epoch)
    else:
        ds = _decoded(part, load, as_uint8=as_uint8, counter=counter)
        if cache == "memory":
            ds = ds.cache()
        elif cache == "file":
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            # A run stopped mid-epoch leaves a lock file that would block every later run.
            for stale in cache_path.parent.glob(cache_path.name + "*.lockfile"):
                stale.unlink()
            ds = ds.cache(str(cache_path))
        if training:
            buffer = min(shuffle_buffer or len(part), max(len(part), 1))
            ds = shuffled_per_epoch(ds, buffer, seed, epoch_counter() if epoch is None else epoch)
        ds = ds.batch(batch_size, drop_remainder=bool(left_out), num_parallel_calls=tf.data.AUTOTUNE)

    @do_not_convert
    def finish(images: tf.Tensor, labels: tf.Tensor):
        images = tf.cast(images, tf.float32)
        # Multi-label data arrive as 0/1 rows already; class indices become one-hot rows.
        labels = (tf.cast(labels, tf.float32) if labels.shape.rank == 2
                  else tf.one_hot(labels, num_classes, dtype=tf.float32))
        return images, labels

    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        # One batch after the other: its generators are shared state, and parallel calls take
        # their draws in whatever order the threads run (the same seed and epoch then flip other
        # images from run to run). A batch's ops still use every core; prefetch overlaps training.
        ds = ds.map(do_not_convert(augment))
    return ds.prefetch(tf.data.AUTOTUNE)


def _file_loader(image_size: tuple[int, int], method: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """``path -> float32 image [h, w, 3]`` in 0..255: read, decode, `resize_for_eval`.

    Traced once per `load_data` call with a fixed signature and shared by every split and the
    check: the traced graph (conditionals for alpha, grayscale and the resize direction) takes
    tens of milliseconds to build, a visible share of a small dataset's first epoch.
    """
    return tf.function(lambda path: resize_for_eval(decode_image(tf.io.read_file(path)),
                                                    image_size, method),
                       input_signature=[tf.TensorSpec([], tf.string)], autograph=False)


def _array_loader(image_size: tuple[int, int], method: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """``image [H, W, 3] -> float32 image [h, w, 3]`` for array and TFDS parts."""
    return do_not_convert(lambda image: resize_for_eval(image, image_size, method))


def _new_store(count: int, image_size: tuple[int, int], as_uint8: bool) -> ImageStore:
    return ImageStore(count, image_size, tf.uint8 if as_uint8 else tf.float32)


def _as_stored(image: tf.Tensor, as_uint8: bool) -> tf.Tensor:
    """A loaded float32 image as cached: rounded to uint8 for training, else unchanged."""
    return tf.cast(tf.round(image), tf.uint8) if as_uint8 else image


def _filling_decoder(part: Part, store: ImageStore,
                     load: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[list[str]], dict]:
    """The check's ``decode_errors`` for a first run: training files are decoded, resized and
    written to ``store`` (their check and their first epoch in one pass); other files are
    decoded as the check always does."""
    index_of = {os.path.abspath(path): i for i, path in enumerate(part.paths)}
    paths = tf.constant(part.paths)

    def decode_errors(todo: list[str]) -> dict[str, str]:
        mine = [index_of[path] for path in todo if path in index_of]
        errors = file_decode_errors([path for path in todo if path not in index_of])
        as_uint8 = store.images.dtype == tf.uint8
        failed = fill_store(store, mine, do_not_convert(
            lambda i: _as_stored(load(tf.gather(paths, i)), as_uint8)))
        errors.update(file_decode_errors([part.paths[i] for i in failed]))
        return errors

    return decode_errors


def _stored(part: Part, load: Callable[[tf.Tensor], tf.Tensor], image_size: tuple[int, int],
            batch_size: int, as_uint8: bool, seed: int, shuffle_buffer: int | None,
            counter: _DropCounter | None, store: ImageStore | None,
            drop_last: bool = False, epoch: tf.Variable | int | None = None) -> tf.data.Dataset:
    """Training batches from an `ImageStore` filled by the check or the first epoch."""
    items = tf.constant(part.paths if part.paths is not None else part.images)
    if store is None:
        store = _new_store(len(part), image_size, as_uint8)

    @do_not_convert
    def load_index(index: tf.Tensor) -> tf.Tensor:
        return _as_stored(load(tf.gather(items, index)), as_uint8)

    ds = stored_training_dataset(
        store, part.labels, load_index, batch_size, seed=seed, shuffle_buffer=shuffle_buffer, epoch=epoch,
        drop_errors=part.paths is not None, min_batch=batch_size if drop_last else 1,
        counters=(counter.entered, counter.left) if counter is not None else None)
    if part.paths is None:  # nothing can be dropped: tell Keras the number of steps
        steps = len(part) // batch_size if drop_last else -(-len(part) // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return ds


def _decoded(part: Part, load: Callable[[tf.Tensor], tf.Tensor], as_uint8: bool = False,
             counter: _DropCounter | None = None) -> tf.data.Dataset:
    """Unbatched ``(image [h, w, 3] 0..255, int64 label)`` elements of a part, float32 or uint8."""
    if part.paths is not None:
        ds = tf.data.Dataset.from_tensor_slices((part.paths, part.labels))
    elif part.images is not None:
        ds = tf.data.Dataset.from_tensor_slices((part.images, part.labels))
    else:
        ds = part.dataset

    @do_not_convert
    def load_item(item: tf.Tensor, label: tf.Tensor):
        if counter is not None:
            item, label = _counted(counter.entered, item, label)
        return _as_stored(load(item), as_uint8), label

    ds = ds.map(load_item, num_parallel_calls=tf.data.AUTOTUNE)
    if part.paths is not None:
        # Last resort only: every file passed `check_listing` (decoded with these same ops), so
        # this drops nothing unless a file changes on disk during training; counted above/below.
        ds = ds.ignore_errors(log_warning=True)
    if counter is not None:
        ds = ds.map(do_not_convert(lambda image, label: _counted(counter.left, image, label)))
    return ds


def _counted(variable: tf.Variable, item: tf.Tensor, label: tf.Tensor):
    with tf.control_dependencies([variable.assign_add(1)]):
        return tf.identity(item), tf.identity(label)


def _cache_plan(mode: str, part: Part, image_size: tuple[int, int], training: bool,
                run_dir: Path | None) -> tuple[str, bool]:
    """``(memory | file | none, store training images as uint8)`` for one split.

    Cached training images are stored as uint8 (the resized image rounded to whole levels, at
    most 0.5 off; augmentation follows): 4x less memory, and 4x fewer bytes to write in the
    first epoch and to gather in later ones than float32. Evaluation images stay float32 so
    evaluation equals the exported serving graph exactly.
    """
    if mode == "file" and run_dir is None:
        raise ConfigError("cache: file needs a run folder (run_dir) to write the cache to; "
                          "use cache: memory or none, or pass run_dir.")
    if mode == "none":
        return "none", False
    if mode == "file":
        return "file", training
    nbytes = len(part) * image_size[0] * image_size[1] * 3 * (1 if training else 4)
    if mode == "memory" or nbytes <= memory_budget():
        return "memory", training
    return ("file", training) if run_dir is not None else ("none", False)


def memory_budget() -> float:
    """Bytes an in-memory cache may take: a share of the memory available now (images, features)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * _MEMORY_SHARE
    except (ValueError, OSError, AttributeError):
        return _MEMORY_FALLBACK_BYTES


def _cache_path(run_dir: Path, name: str, part: Part, image_size: tuple[int, int],
                config: Any) -> Path:
    """A cache file name that changes whenever the cached content would."""
    digest = hashlib.sha1(repr((tuple(image_size), config.source, config.resize)).encode())
    digest.update(part.labels.tobytes())
    if part.paths is not None:
        for path in part.paths:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    elif part.images is not None:
        digest.update(np.ascontiguousarray(part.images).tobytes())
    else:
        digest.update(repr(sorted(config.model_dump(include={"name", "data_dir", "train_split",
                                                              "val_split", "test_split"}).items()))
                      .encode())
    return Path(run_dir) / "cache" / f"{name}-{digest.hexdigest()[:16]}"
