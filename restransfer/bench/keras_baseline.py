"""The quickstart written as a plain Keras script: the reference `bench transfer --keras-baseline` runs.

A user without restransfer would write the quickstart like this: a CIFAR ResNet-20 (He et al.
2015, 4.2; option A shortcuts) written directly in Keras, AdamW with cosine decay and linear
warm-up, ``model.fit`` on NumPy arrays. The recipes' hyperparameters (epochs, rate, warm-up,
weight decay, batch, BatchNorm momentum) and images (the same seed, the same source letters and
target digits as restransfer loads them) are read from the same recipes, so the two differ only
in what restransfer adds: precise BN, the head's start, the feature cache, the run folder.

Per seed: a source pretrained from scratch, then from its weights the target with the recipe's
frozen stages (``transfer``) and with everything but the head frozen (``head_only``), and the
target from random weights (``scratch``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RUNS = ("source", "transfer", "head_only", "scratch")
# restransfer's runs in the same benchmark that each plain-Keras run mirrors: (init, freeze).
MIRRORS = {"transfer": ("transfer", "conv1-2"), "head_only": ("transfer", "all_but_head"),
           "scratch": ("scratch", "none")}


def keras_baseline_records(recipes: Mapping[str, Path], seed: int, *, source_overrides: Mapping[str, Any],
                           target_overrides: Mapping[str, Any]) -> list[dict]:
    """The four plain-Keras runs of one seed, as records of ``kind: "keras"``.

    Args:
        recipes: ``{"source", "transfer", "scratch"}`` recipe files (the shipped quickstart's).
        seed: the seed of every run (and of the images, as the recipes' ``seed`` key).
        source_overrides, target_overrides: the benchmark's ``--source-set`` and ``--set``.
    """
    import keras

    from restransfer.recipe.load import load_recipe
    from restransfer.recipe.plan import load_plan

    source = load_recipe(recipes["source"], {**source_overrides, "seed": seed})
    target = load_recipe(recipes["transfer"], {**target_overrides, "seed": seed, "model.weights": "none"})
    scratch = load_recipe(recipes["scratch"], {**target_overrides, "seed": seed})
    frozen = load_plan(recipes["transfer"], {**target_overrides, "seed": seed, "model.weights": "none"}
                       ).phases[0].frozen
    (xs, ys), (xs_val, ys_val) = recipe_arrays(source)
    (xt, yt), (xv, yv) = recipe_arrays(target)
    size = tuple(target.image_size)
    records = []

    def add(run: str, seconds: float, accuracy: float) -> None:
        records.append({"kind": "keras", "seed": seed, "run": run, "val_accuracy": accuracy,
                        "wall_seconds": round(seconds, 2)})

    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    source_model = resnet20(int(ys.max()) + 1, source.model.bn_momentum, size)
    fit_phase(source_model, source.phases[0], source.data.batch_size, xs, ys, seed)
    add("source", time.perf_counter() - start, _accuracy(source_model, xs_val, ys_val))
    for run, stages in (("transfer", tuple(frozen)), ("head_only", ("conv", "input"))):
        start = time.perf_counter()
        keras.utils.set_random_seed(seed)
        backbone = resnet20(int(ys.max()) + 1, target.model.bn_momentum, size)
        backbone.set_weights(source_model.get_weights())  # its own variables: the source stays as pretrained
        head = keras.layers.Dense(int(yt.max()) + 1, activation="softmax", name="predictions")
        model = keras.Model(backbone.inputs, head(backbone.get_layer("avg_pool").output))
        fit_phase(model, target.phases[0], target.data.batch_size, xt, yt, seed, frozen=stages)
        add(run, time.perf_counter() - start, _accuracy(model, xv, yv))
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = resnet20(int(yt.max()) + 1, scratch.model.bn_momentum, size)
    fit_phase(model, scratch.phases[0], scratch.data.batch_size, xt, yt, seed)
    add("scratch", time.perf_counter() - start, _accuracy(model, xv, yv))
    return records


def resnet20(num_classes: int, momentum: float | None, size: tuple[int, int]):
    """CIFAR ResNet-20 with option A shortcuts, written directly in Keras.

    Layers are named by stage (``conv1`` stem, ``conv2``-``conv4``) only so that the transfer run
    can freeze the same stages as the recipe.
    """
    import keras
    from keras import layers, ops

    def bn(name):
        return layers.BatchNormalization(momentum=momentum if momentum is not None else 0.99, epsilon=1e-5,
                                         name=name)

    def shortcut_a(filters):
        def pad(x):
            x = x[:, ::2, ::2, :]
            extra = filters - x.shape[-1]
            return ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])
        return pad

    inputs = keras.Input((*size, 3))
    x = layers.Normalization(mean=[123.675, 116.28, 103.53], variance=[58.395 ** 2, 57.12 ** 2, 57.375 ** 2],
                             name="input_norm")(inputs)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="conv1_conv")(x)
    x = layers.ReLU(name="conv1_relu")(bn("conv1_bn")(x))
    for stage, filters in zip((2, 3, 4), (16, 32, 64)):
        for block in range(3):
            name = f"conv{stage}_block{block}"
            stride = 2 if stage > 2 and block == 0 else 1
            y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                              kernel_initializer="he_normal", name=f"{name}_1_conv")(x)
            y = layers.ReLU(name=f"{name}_1_relu")(bn(f"{name}_1_bn")(y))
            y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                              name=f"{name}_2_conv")(y)
            y = bn(f"{name}_2_bn")(y)
            if stride != 1:
                x = layers.Lambda(shortcut_a(filters), name=f"{name}_shortcut")(x)
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))
    features = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(features)
    return keras.Model(inputs, outputs)


def fit_phase(model, phase, batch_size: int, x, y, seed: int, frozen: tuple[str, ...] = ()) -> None:
    """Compile and fit one recipe phase as a plain script would: AdamW, CosineDecay with warm-up.

    ``frozen``: layer-name prefixes to freeze (``conv1`` freezes ``conv1_*``).
    """
    import keras

    for layer in model.layers:
        layer.trainable = not layer.name.startswith(frozen) if frozen else True
    steps = math.ceil(len(x) / batch_size)
    rate = phase.optimizer.learning_rate
    warmup = round(phase.schedule.warmup_epochs * steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else rate, decay_steps=max(phase.epochs * steps - warmup, 1),
        warmup_target=rate if warmup else None, warmup_steps=warmup)
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=phase.weight_decay),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    model.fit(x, y, batch_size=batch_size, epochs=phase.epochs, shuffle=True, verbose=0)


def recipe_arrays(recipe) -> tuple[tuple, tuple]:
    """``((x_train, y_train), (x_val, y_val))`` of a Recipe: every training image once, un-augmented,
    and the validation images, as restransfer loads them (integer labels)."""
    from restransfer.data import load_data
    from restransfer.diagnostics.arrays import dataset_arrays

    bundle = load_data(**{**recipe.data.model_dump(), "augment": {}}, seed=recipe.seed)
    return dataset_arrays(bundle.train_unaugmented), dataset_arrays(bundle.val)


def _accuracy(model, x, y) -> float:
    import numpy as np

    return float(np.mean(model.predict(x, batch_size=64, verbose=0).argmax(-1) == y))
