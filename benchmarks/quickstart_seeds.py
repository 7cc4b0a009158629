"""The quickstart over several seeds: restransfer's recipes against a plain hand-written Keras script.

For each seed (the source's letters, the digits split, the initialisation and the shuffle all
follow it):

* restransfer: ``recipes/quickstart_source.yaml`` pretrains on 42 rendered letters (the
  ``glyphs`` source); the target recipe fine-tunes it on handwritten digits 5-9 (``transfer``), the same recipe with ``freeze=all_but_head``
  trains only the new head (``head_only``), and the scratch recipe trains the target from random
  weights (``scratch``). Each is also evaluated after recomputing its trainable BatchNorm layers'
  statistics from the training images (``*_bn_recomputed``: `restransfer.training.precise_bn`,
  no weight changes), which shows how much the stored statistics cost;
* ``probe``: a logistic regression (scikit-learn, standardised features) fitted on the source
  model's pooled frozen features of the same training images: what a head-only phase should reach;
* ``keras``: the same task and budget written directly in Keras (a CIFAR ResNet-20 with option A
  shortcuts, AdamW, cosine decay with linear warm-up, ``model.fit`` on NumPy arrays), the
  recipes' hyperparameters read from the same YAML files.

Everything runs in one process, one run after another, on the same images. Wall seconds are
noisy on a shared CPU; compare runs measured in the same invocation.

    python benchmarks/quickstart_seeds.py --seeds 0 1 2 3 4 --out benchmarks/results/quickstart-seeds.json
    python benchmarks/quickstart_seeds.py --seeds 0 --target-set data.per_class=5   # another target size
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def arrays(dataset) -> tuple:
    """Concatenate a dataset's ``(images, one-hot)`` batches into NumPy arrays (integer labels)."""
    import numpy as np

    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in dataset])
    return np.concatenate(xs).astype("float32"), np.concatenate(ys).argmax(-1)


def accuracy(model, x, y) -> float:
    import numpy as np

    return float(np.mean(model.predict(x, batch_size=64, verbose=0).argmax(-1) == y))


def summary(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": round(min(values), 4), "max": round(max(values), 4), "n": len(values)}


# ------------------------------------------------------------------------- restransfer
def source_run(recipes: dict, seed: int, sources: Path) -> tuple[Path, float]:
    """The source run of ``seed`` in ``sources`` (trained once, kept and reused); its folder and seconds."""
    from restransfer.recipe.engine import train

    folder = sources / f"seed{seed}"
    if (folder / "metrics.json").exists() and json.loads((folder / "run.json").read_text()).get("status") == "finished":
        return folder, 0.0
    start = time.perf_counter()
    train(recipes["source"], [f"seed={seed}"], out=folder, force=True, verbose=0)
    return folder, round(time.perf_counter() - start, 1)


def restransfer_runs(recipes: dict, seed: int, sets: list[str], work: Path, source: Path, data) -> dict:
    """Transfer, head-only and scratch through ``restransfer.train``; accuracies and seconds."""
    import keras

    from restransfer.models.stages import layer_stage
    from restransfer.recipe.engine import train
    from restransfer.training.precise_bn import precise_bn, trainable_batch_norms

    (x_train, y_train), (x_val, y_val) = data
    out = {}
    plan = {
        "transfer": (recipes["target"], [f"seed={seed}", f"model.weights={source}", *sets]),
        "head_only": (recipes["target"], [f"seed={seed}", f"model.weights={source}",
                                          "phases[0].freeze=all_but_head", *sets]),
        "scratch": (recipes["scratch"], [f"seed={seed}", *sets]),
    }
    for name, (recipe, overrides) in plan.items():
        start = time.perf_counter()
        run = train(recipe, overrides, out=work / name, force=True, verbose=0)
        seconds = time.perf_counter() - start
        row = {"val_accuracy": run.metrics["final"]["val_accuracy"], "seconds": round(seconds, 1),
               "train_images": run.metrics["final"]["num_train"]}
        model = keras.saving.load_model(run.run_dir / "model.keras")  # what the run saved
        row["val_accuracy_saved_model"] = accuracy(model, x_val, y_val)
        # The phase's batch size, the training images without augmentation.
        batch = run.plan.data.batch_size
        # Only the layers that trained: the saved model has every layer trainable again.
        frozen = set(run.plan.phases[-1].frozen)
        layers = [bn for bn in trainable_batch_norms(model) if layer_stage(bn.name) not in frozen]
        bn = precise_bn(model, x_train, batch_size=batch, layers=layers)
        row["val_accuracy_bn_recomputed"] = accuracy(model, x_val, y_val)
        row["bn_layers_recomputed"] = len(bn.layers)
        out[name] = row
        print(name, row, flush=True)
    return out


def target_arrays(recipe: Path, seed: int, sets: list[str]):
    """The target's training and validation images exactly as restransfer loads them."""
    from restransfer.data import load_data
    from restransfer.recipe.plan import load_plan

    config = load_plan(recipe, [f"seed={seed}", "model.weights=none", *sets])
    bundle = load_data(**config.data_options())
    # Every training image once (a training epoch may leave a small last batch out).
    return arrays(getattr(bundle, "train_unaugmented", None) or bundle.train), arrays(bundle.val), config


def source_arrays(recipe: Path, seed: int):
    from restransfer.data import load_data
    from restransfer.recipe.plan import load_plan

    config = load_plan(recipe, [f"seed={seed}"])
    bundle = load_data(**config.data_options())
    # Every training image once (a training epoch may leave a small last batch out).
    return arrays(getattr(bundle, "train_unaugmented", None) or bundle.train), arrays(bundle.val), config


def probe_accuracy(source_model_path: Path, data) -> float:
    """Logistic regression on the source model's pooled features of the target's training images."""
    import keras
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (x_train, y_train), (x_val, y_val) = data
    model = keras.saving.load_model(source_model_path)
    features = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    f_train = features.predict(x_train, verbose=0)
    f_val = features.predict(x_val, verbose=0)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(f_train, y_train)
    return float(probe.score(f_val, y_val))


# ------------------------------------------------------------------------- plain Keras
def keras_resnet20(num_classes: int, momentum: float, size: tuple[int, int]):
    """CIFAR ResNet-20 (He et al. 2015, 4.2; option A shortcuts), written directly in Keras.

    Layers are named by stage (``conv1`` stem, ``conv2``-``conv4``) only so that the transfer
    run can freeze the same stages as the recipe.
    """
    import keras
    from keras import layers, ops

    def bn(name):
        return layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=name)

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


def keras_fit(model, phase: dict, batch_size: int, x, y, seed: int, frozen: tuple[str, ...] = ()):
    """Compile and fit one phase as a plain script would: AdamW, CosineDecay with warm-up, fit on arrays."""
    import math

    import keras

    for layer in model.layers:
        layer.trainable = not layer.name.startswith(frozen) if frozen else True
    steps = math.ceil(len(x) / batch_size)
    total = phase["epochs"] * steps
    warmup = round(phase["schedule"].get("warmup_epochs", 0) * steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else phase["optimizer"]["learning_rate"], decay_steps=max(total - warmup, 1),
        warmup_target=phase["optimizer"]["learning_rate"] if warmup else None, warmup_steps=warmup)
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=phase.get("weight_decay", 0.0)),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    model.fit(x, y, batch_size=batch_size, epochs=phase["epochs"], shuffle=True, verbose=0)


def keras_runs(recipes: dict, seed: int, sets: list[str], source_data, target_data) -> dict:
    import keras
    import yaml

    from restransfer.recipe.plan import load_plan

    raw = {name: yaml.safe_load(Path(path).read_text()) for name, path in recipes.items()}
    target = load_plan(recipes["target"], [f"seed={seed}", "model.weights=none", *sets])
    scratch = load_plan(recipes["scratch"], [f"seed={seed}", *sets])
    (xs, ys), _ = source_data
    (xt, yt), (xv, yv) = target_data
    out = {}
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    size = target.image_size  # the source recipe's too: the weights are shared
    source = keras_resnet20(len(set(ys.tolist())), raw["source"]["model"]["bn_momentum"], size)
    keras_fit(source, raw["source"]["phases"][0], raw["source"]["data"]["batch_size"], xs, ys, seed)
    out["source_seconds"] = round(time.perf_counter() - start, 1)
    frozen_stages = tuple(f"{s}_" for s in target.phases[0].frozen)
    for name, frozen in (("transfer", frozen_stages), ("head_only", ("conv", "input"))):
        start = time.perf_counter()
        keras.utils.set_random_seed(seed)
        backbone = keras_resnet20(len(set(ys.tolist())), raw["target"]["model"]["bn_momentum"], size)
        backbone.set_weights(source.get_weights())  # its own variables: source stays as pretrained
        head = keras.layers.Dense(len(set(yt.tolist())), activation="softmax", name="predictions")
        model = keras.Model(backbone.inputs, head(backbone.get_layer("avg_pool").output))
        keras_fit(model, target.phases[0].config.model_dump(), target.data.batch_size, xt, yt, seed, frozen=frozen)
        out[name] = {"val_accuracy": accuracy(model, xv, yv), "seconds": round(time.perf_counter() - start, 1)}
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = keras_resnet20(len(set(yt.tolist())), raw["scratch"]["model"]["bn_momentum"], size)
    keras_fit(model, scratch.phases[0].config.model_dump(), scratch.data.batch_size, xt, yt, seed)
    out["scratch"] = {"val_accuracy": accuracy(model, xv, yv), "seconds": round(time.perf_counter() - start, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--recipes", type=Path, default=ROOT / "recipes", help="folder with quickstart_*.yaml")
    parser.add_argument("--target-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for the target and scratch recipes (e.g. data.per_class=5)")
    parser.add_argument("--no-keras", action="store_true", help="skip the plain-Keras reference")
    parser.add_argument("--out", type=Path, help="JSON results file")
    parser.add_argument("--sources", type=Path, help="keep the source runs here and reuse them (default: not kept)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="write the union of the seeds of earlier results files to --out (nothing trains)")
    args = parser.parse_args(argv)
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        results = {**parts[0], "merged_from": [str(p) for p in args.merge],
                   "commands": [part["command"] for part in parts],
                   "seeds": {seed: row for part in parts for seed, row in part["seeds"].items()}}
        return write_summary(results, args.out)

    import keras
    import sklearn
    import tensorflow as tf

    recipes = {name: args.recipes / f"quickstart_{name}.yaml" for name in ("source", "target", "scratch")}
    results = {"command": "python benchmarks/quickstart_seeds.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.processor() or platform.machine()}, "
               f"{__import__('os').cpu_count()} cores (shared)", "keras": keras.__version__,
               "tensorflow": tf.__version__, "sklearn": sklearn.__version__, "backend": keras.backend.backend(),
               "recipes": {n: Path(p).read_text() for n, p in recipes.items()}, "target_set": args.target_set,
               "seeds": {}}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="qs-seeds-") as tmp:
            work = Path(tmp)
            source, seconds = source_run(recipes, seed, args.sources or work / "sources")
            train, val, _ = target_arrays(recipes["target"], seed, args.target_set)
            row = {"restransfer": {"source": {"val_accuracy": json.loads((source / "metrics.json").read_text())[
                "final"]["val_accuracy"], "seconds": seconds},
                **restransfer_runs(recipes, seed, args.target_set, work, source, (train, val))}}
            row["probe"] = probe_accuracy(source / "model.keras", (train, val))
            if not args.no_keras:
                row["keras"] = keras_runs(recipes, seed, args.target_set, source_arrays(recipes["source"], seed)[:2],
                                          (train, val))
        results["seeds"][str(seed)] = row
        print(json.dumps({seed: row}), flush=True)
    return write_summary(results, args.out)


def write_summary(results: dict, out: Path | None) -> int:
    table = {}
    for row in results["seeds"].values():
        for impl in ("restransfer", "keras"):
            for name, values in row.get(impl, {}).items():
                if isinstance(values, dict):
                    for key, value in values.items():
                        if key.startswith("val_accuracy") or key == "seconds":
                            table.setdefault(f"{impl}.{name}.{key}", []).append(value)
        table.setdefault("probe", []).append(row["probe"])
    results["summary"] = {key: summary(values) for key, values in table.items()}
    for key, value in results["summary"].items():
        print(f"{key:55s} {value['mean']:.3f} +- {value['sd']:.3f} ({value['min']:.3f} .. {value['max']:.3f})")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
