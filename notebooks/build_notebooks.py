"""Write the notebooks (without outputs) from the cell lists below: `python notebooks/build_notebooks.py`.

The .ipynb files are generated so they stay reviewable as code; tests/test_notebooks.py checks
that the committed files equal this script's output and executes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = '''\
import os
import time

import numpy as np

# Small settings run in about a minute on 2 CPU cores; RESTRANSFER_FULL=1 runs the full-size experiment.
FULL = os.environ.get("RESTRANSFER_FULL") == "1"
OUT = "runs/notebooks"  # run folders and figures land here, relative to the working directory
'''


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


QUICKSTART = [
    md("""
# Quickstart: build, inspect, fine-tune, evaluate, export, reload

Everything below uses restransfer's own functions. The data are scikit-learn's bundled 8x8
digits (upscaled to 32 px), so the notebook runs offline; swap the `data:` section for
`source: folder` (or `tfds`) to use your own images.
"""),
    code(SETUP),
    md("""
## 1. Build a model and look at its stages
`create_model` builds any registered ResNet/ResNeXt; layer names start with their stage
(`conv1` ... `conv4`, `head`), and freezing, per-stage learning rates and the tables below use them.
"""),
    code('''
import restransfer as rt
from restransfer.diagnostics import render_stage_table

print(rt.list_models("cifar*"))
model = rt.create_model("cifar_resnet20", num_classes=5)
render_stage_table(model)
'''),
    md("""
## 2. Fine-tune with a recipe from Python
A recipe is the same mapping as a YAML file. First pretrain on digits 0-4 (the "source" task),
then fine-tune on digits 5-9 with only a few labelled images per class, with `conv1` and
`conv2` frozen. `overrides` are the `--set` of the command line.
"""),
    code('''
source_recipe = {
    "model": {"name": "cifar_resnet20", "weights": "none", "bn_momentum": 0.9},
    "data": {"source": "digits", "classes": [0, 1, 2, 3, 4], "per_class": 100 if FULL else 60,
             "val_per_class": 30, "image_size": 32, "batch_size": 32},
    "phases": [{"name": "pretrain", "epochs": 6 if FULL else 3, "freeze": "none",
                "optimizer": {"name": "adamw", "learning_rate": 0.003},
                "schedule": {"name": "cosine", "warmup_epochs": 0.5}}],
    "seed": 0,
}
source = rt.train(source_recipe, out=f"{OUT}/01_source", force=True, verbose=0)
print("source val accuracy:", round(source.metrics["final"]["val_accuracy"], 3))
'''),
    code('''
target_recipe = {
    "model": {"name": "cifar_resnet20", "weights": str(source.run_dir), "bn_momentum": 0.9},
    "data": {"source": "digits", "classes": [5, 6, 7, 8, 9], "per_class": 10, "val_per_class": 40,
             "image_size": 32, "batch_size": 16},
    "phases": [{"name": "finetune", "epochs": 15, "freeze": ["conv1", "conv2"],
                "optimizer": {"name": "adamw", "learning_rate": 0.001},
                "schedule": {"name": "cosine", "warmup_epochs": 1}}],
    "seed": 0,
}
start = time.perf_counter()
run = rt.train(target_recipe, overrides={"phases[0].epochs": 15 if FULL else 6},
               out=f"{OUT}/01_target", force=True, verbose=0)
print(f"fine-tuned in {time.perf_counter() - start:.0f} s; files:", sorted(p.name for p in run.run_dir.iterdir()))
'''),
    md("""
## 3. Evaluate and plot
`rt.evaluate` reloads the run folder's `model.keras` and scores a split; the curves come from the
run's `history.csv` through `plot_curves`.
"""),
    code('''
from restransfer.diagnostics import plot_curves

report = rt.evaluate(run.run_dir)
print({k: v for k, v in report.items() if isinstance(v, (int, float))})
plot_curves({"fine-tune (conv1-2 frozen)": run}, metrics=("loss", "val_accuracy"));
'''),
    md("""
## 4. Export a SavedModel, reload it, predict
The SavedModel takes encoded image bytes (or float pixels) and returns probabilities and class
names; the preprocessing is inside, so serving equals evaluation.
"""),
    code('''
import tensorflow as tf

from restransfer.diagnostics import dataset_arrays
from restransfer.data import load_data

exported = rt.export_run(run.run_dir, "saved_model")  # verifies the reload in a fresh process
'''),
    code('''
data = load_data(source="digits", classes=[5, 6, 7, 8, 9], per_class=10, val_per_class=40,
                 image_size=32, batch_size=16)
x_val, y_val = dataset_arrays(data.val, limit=32)
reloaded = tf.saved_model.load(str(exported.path))
print("signatures:", sorted(reloaded.signatures))
served = reloaded.signatures["serve_tensor"](images=tf.constant(x_val))
in_memory = run.model.predict(x_val, verbose=0)
print("max |SavedModel - Keras| probability:", float(np.abs(served["probabilities"].numpy() - in_memory).max()))
# The default signature takes encoded image files, as a web service receives them.
png = [tf.io.encode_png(tf.cast(image, tf.uint8)) for image in x_val[:8]]
answer = reloaded.signatures["serving_default"](image_bytes=tf.stack(png))
print("predicted:", [c.decode() for c in answer["classes"].numpy()])
print("true:     ", [run.class_names[i] for i in y_val[:8]])
'''),
]


RESIDUAL = [
    md("""
# Residual learning: measure the degradation problem and gradient flow

Articles say: *plain networks degrade as they get deeper because gradients vanish or explode;
shortcuts, H(x) = F(x) + x, fix it.* Two measurements test this with restransfer's own models and
diagnostics. `plain_cifar_resnetN` is `cifar_resnetN` with every shortcut removed and nothing else
changed (same layers, same parameter count).

Data: scikit-learn's bundled 8x8 digits, upscaled to 32 px (offline, 10 classes).
"""),
    code(SETUP),
    code('''
import keras

import restransfer as rt
from restransfer.data import load_data
from restransfer.diagnostics import dataset_arrays

data = load_data(source="digits", image_size=32, batch_size=64,
                 per_class=None if FULL else 50, val_per_class=None if FULL else 30)
x_train, y_train = dataset_arrays(data.train)
x_val, y_val = dataset_arrays(data.val)
print(f"{len(x_train)} training and {len(x_val)} validation images, {data.num_classes} classes")
'''),
    md("""
## 1. Gradient flow at initialisation
`gradient_norms` runs one batch forward and backward (training mode) and reports the L2 norm of
the loss gradient of every block's weights, from `conv1` (input side) to the head.
"""),
    code('''
from restransfer.diagnostics import gradient_flow, plot_gradient_flow

keras.utils.set_random_seed(0)
names = ["plain_cifar_resnet20", "cifar_resnet20", "plain_cifar_resnet56", "cifar_resnet56"]
models = {name: rt.create_model(name, preprocessing="tf") for name in names}
flow = gradient_flow(models, x_train[:32], y_train[:32], level="block")
plot_gradient_flow(flow, path=f"{OUT}/02_gradient_flow.png")
for name, norms in flow.items():
    values = list(norms.values())
    print(f"{name:22s} conv1 {values[0]:9.3g}   last block {values[-2]:7.3g}   "
          f"ratio first/last block {values[0] / values[-2]:8.3g}")
'''),
    md("""
**What this shows.** In the 56-layer plain network the gradient does not vanish towards the
input: with BatchNorm it *explodes*, growing steadily block after block from the head to
`conv1` (more than 1000x on this batch), which is the explosion that Yang et al. (2019) prove
for deep BatchNorm networks without shortcuts. The 20-layer plain network grows only a few
times. Both residual networks stay within about one order of magnitude at every depth: the
identity path carries the gradient back unchanged, so depth no longer multiplies it. He et al.
(2015) already noted that BatchNorm keeps plain-net gradients from vanishing; the measurement
agrees, and shows what goes wrong instead.
"""),
    md("""
## 2. The degradation experiment
Train plain and residual networks of two depths the same way (`train_curves`: same data order,
SGD with momentum and cosine decay, no augmentation) and compare training loss. Small settings use
narrow networks (8/16/32 channels instead of 16/32/64) and depths 8 and 20 to fit in a minute on
two CPU cores; `RESTRANSFER_FULL=1` trains the published 20- and 56-layer networks at full width.
"""),
    code('''
from dataclasses import replace

from restransfer.diagnostics import plot_curves, train_curves
from restransfer.models.resnet import build_resnet
from restransfer.models.specs import SPECS

if FULL:
    depths, widths, epochs = (20, 56), (16, 32, 64), 30
else:
    depths, widths, epochs = (8, 20), (8, 16, 32), 3
models = {}
for depth in depths:
    n = (depth - 2) // 6
    spec = replace(SPECS["cifar_resnet20"], repeats=(n, n, n), widths=widths)
    for kind, variant in (("plain", spec.plain()), ("residual", spec)):
        keras.utils.set_random_seed(0)
        models[f"{kind}-{depth}"] = build_resnet(variant, name=f"{kind}{depth}", num_classes=data.num_classes,
                                                 preprocessing="tf")
start = time.perf_counter()
curves = train_curves(models, x_train, y_train, x_val, y_val, epochs=epochs, batch_size=32, learning_rate=0.05)
print(f"trained {len(models)} networks in {time.perf_counter() - start:.0f} s")
plot_curves(curves, metrics=("loss", "val_accuracy"), path=f"{OUT}/02_degradation.png", log_y=False);
'''),
    code('''
for label, history in curves.items():
    print(f"{label:12s} final training loss {history['loss'][-1]:.3f}   "
          f"val accuracy {history['val_accuracy'][-1]:.3f}")
'''),
    md("""
**What to look for.** He et al. (2015, Fig. 1 and 6) found that the deeper *plain* network has
the higher *training* loss (so it is not overfitting: it optimises worse), while the deeper
*residual* network trains at least as well as the shallower one. Compare the plain pair and the
residual pair in the left panel. At the small settings (3 epochs, narrow 8- and 20-layer
networks, 500 images) the gap is small and can be within run-to-run noise; the printed numbers
above are this run's real results. The full setting trains the real 20/56-layer networks for 30
epochs on all digits.
"""),
]


BOTTLENECK = [
    md("""
# Bottlenecks, grouped convolutions and normalisation

Three claims, measured with `stage_table` (parameters and multiply-adds per stage), `grouped_spec`
(a ResNeXt-like variant of any bottleneck network) and `compare_norms` (short training runs):

1. bottleneck blocks (1x1 reduce, 3x3, 1x1 expand) cut parameters;
2. grouped convolutions (ResNeXt) trade width for cardinality at the same budget, down to depthwise;
3. BatchNorm fails at small batch where GroupNorm, LayerNorm and InstanceNorm do not.
"""),
    code(SETUP),
    md("""
## 1. Basic blocks vs bottlenecks
ResNet-34 (basic blocks, two 3x3 convs) and ResNet-50 (bottlenecks) have the same stages. The
bottleneck network is deeper and its blocks output 4x the channels, yet costs about the same.
"""),
    code('''
import restransfer as rt
from restransfer.diagnostics import plot_stage_bars, render_stage_table, stage_table, totals

tables = {name: stage_table(rt.create_model(name)) for name in ("resnet34", "resnet50")}
for name, rows in tables.items():
    print(f"{name}: {sum(r.trainable_params for r in rows) / 1e6:.1f} M parameters, "
          f"{sum(r.macs for r in rows) / 1e9:.2f} G multiply-adds at 224 px")
plot_stage_bars(tables, value="params", title="Parameters per stage", path=f"{OUT}/03_stage_params.png");
'''),
    md("""
ResNet-50's published relatives, each a row of the same variant table: ResNet-D (deep 3x3 stem,
average-pool shortcut), SE-ResNet (squeeze-excitation after every branch) and ResNet V2
(pre-activation, as keras.applications builds it).
"""),
    code('''
for name in ("resnet50", "resnet50d", "seresnet50", "resnet50v2"):
    params, macs = totals(rt.create_model(name))
    print(f"{name:11s} {params / 1e6:5.2f} M parameters, {macs / 1e9:.2f} G multiply-adds at 224 px")
'''),
    md("""
The same comparison with the block's input and output channels held equal: a CIFAR-scale network
of three stages of three blocks whose blocks map 64/128/256 channels to themselves, once with
basic blocks at full width, once with bottlenecks that squeeze to a quarter of the channels for the 3x3.
"""),
    code('''
from restransfer.models.resnet import build_resnet
from restransfer.models.specs import ResNetSpec

same_io = {
    "basic 3x3-3x3": ResNetSpec(block="basic", repeats=(3, 3, 3), widths=(64, 128, 256), stem="cifar"),
    "bottleneck 1x1-3x3-1x1": ResNetSpec(block="bottleneck", repeats=(3, 3, 3), widths=(16, 32, 64), stem="cifar"),
}
for label, spec in same_io.items():
    params, macs = totals(build_resnet(spec, num_classes=10, input_shape=(32, 32, 3)))
    print(f"{label:24s} {params / 1e6:6.2f} M parameters  {macs / 1e6:7.1f} M multiply-adds")
'''),
    md("""
## 2. Grouped convolutions: ResNeXt at equal budget, and down to depthwise
`grouped_spec("resnet50", C, d)` gives each 3x3 convolution C groups of d channels (at `conv2`).
Xie et al. (2017, Table 2) list C x d pairs that keep ResNet-50's budget; the table checks that
claim by counting. The second sweep holds the 3x3 width at 64 (C x d = 64) and raises the
cardinality to 64 groups of 1 channel, where `conv2`'s 3x3 is depthwise (later stages keep the
ResNeXt template, so their groups hold 2, 4 and 8 channels).
"""),
    code('''
from restransfer.diagnostics import grouped_spec, plot_tradeoff

size = (224, 224, 3) if FULL else (64, 64, 3)  # multiply-adds scale with pixels; the ratios do not
base_params, base_macs = totals(build_resnet(grouped_spec("resnet50", 1, 64), input_shape=size))
print(f"{'C x d':8s} {'params':>9s} {'vs R50':>7s} {'mult-adds':>10s} {'vs R50':>7s}")
for groups, width in ((1, 64), (2, 40), (4, 24), (8, 14), (32, 4)):
    params, macs = totals(build_resnet(grouped_spec("resnet50", groups, width), input_shape=size))
    print(f"{groups:>2d} x {width:<3d} {params / 1e6:8.2f}M {params / base_params:7.3f} "
          f"{macs / 1e9:9.3f}G {macs / base_macs:7.3f}")
'''),
    code('''
sweep = {}
for groups in (1, 2, 4, 8, 16, 32, 64) if FULL else (1, 4, 16, 64):
    model = build_resnet(grouped_spec("resnet50", groups, 64 // groups), input_shape=size)
    sweep[groups] = totals(model)
    conv = model.get_layer("conv2_block1_2_conv")
    print(f"{groups:2d} groups x {64 // groups:2d}: {sweep[groups][0] / 1e6:6.2f} M params, "
          f"{sweep[groups][1] / 1e9:.3f} G mult-adds, conv2 3x3 kernel {tuple(conv.kernel.shape)}")
plot_tradeoff({f"{g}x{64 // g}": (p / 1e6, m / 1e9) for g, (p, m) in sweep.items()},
              xlabel="parameters (M)", ylabel="multiply-adds (G)",
              title="ResNet-50 with C groups of 64/C channels", path=f"{OUT}/03_groups.png");
'''),
    md("""
**What this shows.** Counting confirms the ResNeXt table: every C x d pair stays within a few
percent of ResNet-50's parameters and multiply-adds, so "more groups at equal budget" means wider
3x3 convolutions for free. At fixed width, more groups shrink only the 3x3 convolutions, so the
savings level off: the 1x1 convolutions, which grouping leaves alone, dominate what remains. Whether
the freed budget buys *accuracy* is a training question this notebook does not measure (it
needs ImageNet-scale runs); Xie et al. report +1.7 top-1 for 32x4d over ResNet-50.
"""),
    md("""
## 3. Normalisation vs batch size
`compare_norms` trains one model per (norm, batch size) from the same initial weights, on the
same images for the same epochs, with the learning rate scaled linearly with the batch size, and
reports validation accuracy (inference mode, where BatchNorm uses its moving averages).
"""),
    code('''
from dataclasses import replace

from restransfer.data import load_data
from restransfer.diagnostics import compare_norms, dataset_arrays, plot_norm_comparison
from restransfer.models.specs import SPECS

data = load_data(source="digits", image_size=32, batch_size=64,
                 per_class=None if FULL else 60, val_per_class=None if FULL else 20)
x_train, y_train = dataset_arrays(data.train)
x_val, y_val = dataset_arrays(data.val)
if FULL:
    model, batch_sizes, epochs = "cifar_resnet20", (2, 4, 8, 16, 32, 64), 8
else:  # an 8-layer, 8-channel CIFAR ResNet: the same blocks, quick to train on two cores
    model, batch_sizes, epochs = replace(SPECS["cifar_resnet20"], repeats=(1, 1, 1), widths=(8, 16, 16)), (4, 32), 2
start = time.perf_counter()
results = compare_norms(x_train, y_train, x_val, y_val, model=model, batch_sizes=batch_sizes, epochs=epochs,
                        base_lr=0.1,
                        on_result=lambda r: print(f"{r.norm:9s} batch {r.batch_size:3d}: accuracy {r.accuracy:.3f}"))
print(f"{len(results)} runs in {time.perf_counter() - start:.0f} s")
plot_norm_comparison(results, path=f"{OUT}/03_norms.png");
'''),
    md("""
**What to look for.** The claim predicts BatchNorm's line falling at the smallest batches while the
other three stay flat. The printed accuracies are this run's measurements. The small settings
(600 training images, 2 epochs, an 8-layer network, batch sizes 4 and 32) only show that the
experiment runs: the networks are far from trained, and their accuracies do not test the claim.
Run with `RESTRANSFER_FULL=1` (cifar_resnet20, all digits, 8 epochs, batch 2 to 64) for that.
"""),
]


TRANSFER = [
    md("""
# Transfer: which stages to freeze, and does pretraining help?

The claim: *early layers hold generic features, so freezing them transfers.* Measured with the
transfer benchmark (`restransfer bench transfer`, `restransfer.bench.transfer`), on the
quickstart task: pretrain on 42 letters drawn from matplotlib's fonts like 8x8 digits (the
`glyphs` source, `recipes/quickstart_source.yaml`), then fine-tune on scikit-learn's handwritten
digits 5-9 with 3 labels per class (`quickstart_target.yaml`) for every choice of frozen stages, from the
source's weights (**transfer**) and from random weights (**scratch**, `quickstart_scratch.yaml`,
the same budget). Three references:

1. a **probe**: a logistic regression fitted on the source's frozen, pooled features of the *same*
   training images the fine-tunes see, scored on the same validation images (what a head-only
   phase should reach);
2. the probe **per stage**, pretrained against random features;
3. the benchmark's committed 5-seed result (`benchmarks/results/transfer_quickstart.json`).

Everything at 16 px, offline. Small settings here: one seed and a few choices.
"""),
    code(SETUP),
    md("""
## 1. The benchmark at this notebook's settings
"""),
    code('''
from IPython.display import Markdown, display

from restransfer.bench.transfer import FREEZES, TransferSettings, markdown_summary, run_transfer, summarize

settings = TransferSettings(
    seeds=(0, 1, 2, 3, 4) if FULL else (0,),
    freezes=tuple(FREEZES) if FULL else ("conv1-2", "all_but_head"),
    source_overrides={} if FULL else {"data.per_class": 20, "phases[0].epochs": 3},
    cache_compare=FULL,
)
records = run_transfer(settings, f"{OUT}/04_bench")
summary = summarize(records)
display(Markdown(markdown_summary(summary)))
'''),
    code('''
%matplotlib inline
# ^ sets up inline display for figures made without pyplot (plot_summary, LRFindResult.plot).
from restransfer.bench.transfer import plot_summary

plot_summary(summary, f"{OUT}/04_transfer.png")
'''),
    md("""
## 2. The probe per stage: pretrained against random features
Each stage's output, frozen and average-pooled, with a logistic regression fitted on the target's
training images and scored on its validation images (`linear_probe(..., val=...)`).
"""),
    code('''
import keras

import restransfer as rt
from restransfer.data import load_data
from restransfer.diagnostics import dataset_arrays, linear_probe, plot_probe
from restransfer.recipe.plan import load_plan
from restransfer.recipe.shipped import shipped_recipe

pretrained = keras.saving.load_model(f"{OUT}/04_bench/seed0/source/model.keras")
with shipped_recipe("quickstart_target.yaml") as path:  # the fine-tunes' training and validation images
    target = load_data(**load_plan(path, {"model.weights": "none", "seed": 0}).data_options(batch_size=64))
(x_train, y_train), (x_val, y_val) = dataset_arrays(target.train_unaugmented), dataset_arrays(target.val)
keras.utils.set_random_seed(0)
random_init = rt.create_model("cifar_resnet20", num_classes=5, preprocessing="tf",
                              input_shape=pretrained.input_shape[1:])  # the recipes' 16 px
probes = {"pretrained on 42 letters": linear_probe(pretrained, x_train, y_train, val=(x_val, y_val)),
          "random initialisation": linear_probe(random_init, x_train, y_train, val=(x_val, y_val))}
for label, rows in probes.items():
    print(label, {r.stage: round(r.accuracy, 3) for r in rows})
plot_probe(probes, path=f"{OUT}/04_probe.png", title="Probe per stage, fitted on the training images");
'''),
    md("""
## 3. The committed results: 5 seeds
`restransfer bench transfer --out benchmarks/results/<file>.json` wrote them; each file stores
its settings, the environment and every run. Mean +- sd over seeds, then min .. max.
"""),
    code('''
import json
from pathlib import Path

results = Path(rt.__file__).resolve().parents[1] / "benchmarks" / "results"
for name in ("transfer_quickstart.json",):
    path = results / name
    if not path.exists():
        print(f"{path} is not here (an installed package has no benchmarks/ folder).")
        continue
    committed = json.loads(path.read_text())["settings"]["summary"]
    display(Markdown(f"**{name}**\\n\\n" + markdown_summary(committed)))
    if len(committed["runs"]) > 1:
        display(plot_summary(committed, title=f"{name}: 5 seeds"))
'''),
    md("""
**What to look for.** The probe is the bar a head-only phase has to reach: it sees exactly the
training images the head sees. Transfer beats scratch where the frozen features carry what the
target needs and the labels are too few to learn them; the spread over seeds says how much of a
difference is noise (one seed here, five in the committed file). In the committed file (its
numbers are on the docs' Benchmarks page), with 3 training images per class, transfer with
conv1-2 frozen is ahead of scratch on every seed, and the head-only phase matches the probe: 42
letters teach the strokes that 15 labelled digits cannot. The transfer rows with nothing,
conv1-2 or conv1-3 frozen are within one standard deviation of each other: the benchmark does
not rank them. The seconds are whole training runs, the first epoch's graph tracing included; the
feature-cache rows time head-only epochs with and without the frozen part run once per image, at
16 and 32 px.
"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_residual_learning.ipynb": RESIDUAL,
    "03_bottleneck_grouped_norm.ipynb": BOTTLENECK,
    "04_transfer_what_to_freeze.ipynb": TRANSFER,
}


def build(name: str) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=NOTEBOOKS[name])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{Path(name).stem[:2]}-{index:02d}"  # stable ids keep regenerated files identical
    return notebook


def main() -> int:
    for name in NOTEBOOKS:
        nbformat.write(build(name), HERE / name)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
