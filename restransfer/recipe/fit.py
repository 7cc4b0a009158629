"""`restransfer fit DATA`: a recipe chosen from the data it finds, said why, then trained as `train`.

The data is a folder with one subfolder per class, or a CSV of ``path,label`` rows. What is read
before any choice: the training images per class (their count and balance) and the pixel size of
up to ``SIZE_SAMPLE`` images (headers only). What is chosen, each with its reason:

- validation: ``--val FOLDER``, ``--val-split F``, or a stratified 20% split;
- the model and image size: a run folder's weights bring their model and size; else ``--model`` and
  ``--image-size``, or a CIFAR ResNet-20 at the images' median side for small images (at most
  ``SMALL_IMAGE`` px) and a ResNet-18 (ResNet-50 for ImageNet weights) at 224 px for photos;
- the phases: for a pretrained backbone, a head-only phase and then fine-tuning with the stem and
  first stage frozen (few images) or nothing frozen (many); for random weights, one phase that
  trains everything;
- epochs and batch size from the image count; class weights ``auto`` (`class_weights`).

The recipe is complete: the run folder's ``recipe.yaml`` (written by `train`) holds it, and
``restransfer train RUN/recipe.yaml`` trains the same run again.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restransfer.errors import ConfigError, DataError

SIZE_SAMPLE = 64
# Images whose median side is at most this train at their own size on a CIFAR ResNet.
SMALL_IMAGE = 64
# Training images from which a pretrained backbone fine-tunes every stage instead of keeping
# the stem and first stage frozen.
MANY_IMAGES = 2000
DEFAULT_VAL_SPLIT = 0.2
# Smaller images are upsampled to this side: a CIFAR ResNet's last stage then still sees 4x4.
MIN_SIDE = 16


@dataclass
class DataFacts:
    """What `fit` reads from the data before choosing: classes, counts and image sizes."""

    source: str
    path: Path
    class_names: list[str]
    counts: list[int]
    sides: list[int] = field(default_factory=list)  # the shorter side of each sampled image

    @property
    def num_images(self) -> int:
        return sum(self.counts)

    @property
    def median_side(self) -> int | None:
        return int(statistics.median(self.sides)) if self.sides else None


@dataclass
class FitChoice:
    """The chosen recipe (a mapping ``load_recipe`` takes) and one line per choice saying why."""

    recipe: dict
    reasons: list[str]
    facts: DataFacts


def read_facts(data: str | Path) -> DataFacts:
    """Classes, images per class and sampled image sides of a class-folder tree or a CSV."""
    from restransfer.data.sources import read_csv, scan_folder

    path = Path(data).expanduser().resolve()
    if path.is_dir():
        classes, _ = scan_folder(path)
        names = sorted(classes)
        files = {name: classes[name] for name in names}
        source = "folder"
    elif path.is_file() and path.suffix.lower() == ".csv":
        paths, labels = read_csv(path)
        names = sorted(set(labels))
        files = {name: [p for p, label in zip(paths, labels) if label == name] for name in names}
        source = "csv"
    else:
        raise DataError(f"{data} is neither a folder with one subfolder per class nor a .csv file of "
                        "'path,label' rows; give one of those (e.g. photos/cat/1.jpg, photos/dog/2.jpg).")
    counts = [len(files[name]) for name in names]
    empty = [name for name, count in zip(names, counts) if count == 0]
    if len(names) < 2 or empty:
        raise DataError(f"{data} needs at least two classes with images; found {len(names)} class(es)"
                        + (f", without images: {', '.join(empty)}" if empty else "") + ".")
    sample = [p for name in names for p in files[name][: max(1, SIZE_SAMPLE // len(names))]][:SIZE_SAMPLE]
    return DataFacts(source=source, path=path, class_names=names, counts=counts, sides=_sides(sample))


def _sides(paths: Sequence[str]) -> list[int]:
    from PIL import Image

    sides = []
    for path in paths:
        try:
            with Image.open(path) as image:  # reads the header, not the pixels
                sides.append(min(image.size))
        except Exception:  # noqa: BLE001 - the data check names broken files when training starts
            continue
    return sides


def choose_recipe(data: str | Path, *, val: str | Path | None = None, val_split: float | None = None,
                  model: str | None = None, weights: str | None = None, image_size: int | None = None,
                  epochs: int | None = None) -> FitChoice:
    """The recipe `fit` trains for ``data``, and why (see the module docstring)."""
    facts = read_facts(data)
    reasons: list[str] = []
    n, k = facts.num_images, len(facts.class_names)
    largest, smallest = max(facts.counts), min(facts.counts)
    reasons.append(f"data: {n} training images in {k} classes ({facts.source} {facts.path}), {smallest} to "
                   f"{largest} per class" + (f", median side {facts.median_side} px" if facts.median_side else ""))
    data_section: dict[str, Any] = {"source": facts.source, "path": str(facts.path)}
    if val is not None and val_split is not None:
        raise ConfigError("Give either --val FOLDER or --val-split F, not both.")
    if val is not None:
        data_section["val_path"] = str(Path(val).expanduser().resolve())
        reasons.append(f"validation: {val} (--val)")
    else:
        split = val_split if val_split is not None else DEFAULT_VAL_SPLIT
        data_section["validation_split"] = split
        reasons.append(f"validation: a stratified {split:g} of each class (" +
                       ("--val-split" if val_split is not None else "no --val given; --val FOLDER uses a folder") + ")")

    run_model, run_size, run_bn = _run_folder_model(weights)
    pretrained = weights is not None and weights != "none"
    if model is None:
        if run_model:
            model = run_model
            reasons.append(f"model: {model}, the architecture of the weights' run")
        elif facts.median_side is not None and facts.median_side <= SMALL_IMAGE and weights != "imagenet":
            model = "cifar_resnet20"
            reasons.append(f"model: cifar_resnet20 (0.27 M parameters): the images are small (median side "
                           f"{facts.median_side} <= {SMALL_IMAGE} px), so a CIFAR ResNet at their own size")
        else:
            model = "resnet50" if weights == "imagenet" else "resnet18"
            reasons.append(f"model: {model}: " + ("ImageNet weights (keras.applications)" if weights == "imagenet"
                                                  else "photos without pretrained weights; pass --weights for "
                                                       "transfer"))
    else:
        reasons.append(f"model: {model} (--model)")
    if image_size is None:
        if run_size:
            image_size = run_size
            reasons.append(f"image size: {image_size} px, the weights' run's")
        elif model.startswith("cifar_"):
            image_size = max(MIN_SIDE, min(SMALL_IMAGE, 8 * round((facts.median_side or 32) / 8)))
            reasons.append(f"image size: {image_size} px, the images' median side rounded to a multiple of 8, at "
                           f"least {MIN_SIDE} (the quickstart trains its 8x8 images at 16)")
        else:
            image_size = 224
            reasons.append("image size: 224 px, the ImageNet ResNets' training size")
    else:
        reasons.append(f"image size: {image_size} px (--image-size)")
    if not pretrained:
        reasons.append("weights: none (random initialisation); --weights imagenet or a run folder transfers "
                       "pretrained features")

    batch = int(min(32, max(4, n // 15)))
    total = epochs if epochs is not None else (12 if n <= 500 else 8 if n <= 5000 else 5)
    reasons.append(f"batch {batch}: a fifteenth of the training images, within 4..32 (about 15 steps per epoch)")
    reasons.append(f"epochs: {total}" + (" (--epochs)" if epochs is not None else
                                         f" for {n} images (12 up to 500, 8 up to 5000, else 5)"))
    data_section.update(image_size=image_size, batch_size=batch)
    phases = _phases(pretrained, total, n, reasons)
    ratio = largest / smallest
    reasons.append(f"class weights: auto, {'logit-adjusted loss' if ratio >= 3 else 'none'}: largest / smallest class = "
                   f"{largest} / {smallest} = {ratio:.3g} ({'>=' if ratio >= 3 else '<'} 3)")
    reasons.append("checkpoint: keep the best epoch on the validation data (monitor auto)")
    recipe = {"model": {"name": model, **({"weights": weights} if pretrained else {}),
                        **({"bn_momentum": run_bn} if run_bn else {})},
              "data": data_section, "phases": phases, "checkpoint": {"monitor": "auto", "keep": "best"}}
    return FitChoice(recipe=recipe, reasons=reasons, facts=facts)


def _phases(pretrained: bool, total: int, n: int, reasons: list[str]) -> list[dict]:
    optimizer = {"name": "adamw", "learning_rate": 0.003}
    if not pretrained:
        reasons.append(f"phases: one, {total} epochs, every stage trains (random weights), AdamW lr 0.003, cosine")
        return [{"name": "train", "epochs": total, "freeze": "none", "optimizer": optimizer,
                 "schedule": {"name": "cosine", "warmup_epochs": 1}, "weight_decay": 0.0001}]
    head = max(1, total // 4) if total > 1 else 0
    freeze = ["conv1", "conv2"] if n < MANY_IMAGES else "none"
    if head == 0:
        reasons.append("phases: one epoch only, so fine-tuning without a head-only phase")
        return [{"name": "finetune", "epochs": 1, "freeze": freeze, "optimizer": optimizer}]
    reasons.append(f"phases: head-only for {head} epoch(s) (the new head learns on the pretrained features), then "
                   f"fine-tuning for {total - head} with " + (f"conv1-2 frozen ({n} < {MANY_IMAGES} images)"
                                                             if n < MANY_IMAGES else "every stage training"))
    return [
        {"name": "head", "epochs": head, "freeze": "all_but_head", "optimizer": optimizer},
        {"name": "finetune", "epochs": total - head, "freeze": freeze,
         "optimizer": {"name": "adamw", "learning_rate": 0.001}, "schedule": {"name": "cosine", "warmup_epochs": 1},
         "weight_decay": 0.0001},
    ]


def _run_folder_model(weights: str | None) -> tuple[str | None, int | None, float | None]:
    """A run folder's model name, image side and BatchNorm momentum (None for other weights)."""
    if weights in (None, "none", "imagenet"):
        return None, None, None
    from restransfer.runs import RunFolder

    path = Path(weights).expanduser()
    if not (path.is_dir() and (path / "recipe.yaml").is_file()):
        return None, None, None
    from restransfer.recipe.plan import run_plan

    plan = run_plan(RunFolder(path))
    return plan.model.name, int(plan.image_size[0]), plan.model.bn_momentum


def fit(data: str | Path, *, val: str | Path | None = None, val_split: float | None = None,
        model: str | None = None, weights: str | None = None, image_size: int | None = None,
        epochs: int | None = None, overrides: Sequence[str] | Mapping[str, Any] | None = None,
        out: str | Path | None = None, dry_run: bool = False, force: bool = False, verbose: int | str = "auto",
        say=print):
    """Choose a recipe for ``data`` (a class-folder tree or a CSV), say why, and train it as `train` does.

    Args:
        data: a folder with one subfolder per class, or a CSV of ``path,label`` rows.
        val: a validation folder (or CSV) of the same classes.
        val_split: a stratified share of ``data`` to validate on instead (default 0.2 without ``val``).
        model: a registered model name (default: chosen from the images).
        weights: anything ``model.weights`` takes: ``imagenet``, a weights file, a run folder.
        image_size: the side images are resized to (default: chosen).
        epochs: epochs in all (default: chosen from the image count).
        overrides: ``--set``-style changes applied to the chosen recipe.
        out: the run folder (default ``runs/<data folder name>``).
        dry_run: return the chosen Plan without training.
        force: replace a finished run in ``out``.
        say: where the reasons go.

    Returns:
        The :class:`~restransfer.recipe.engine.Run`, or the ``Plan`` with ``dry_run``.

    Example:
        >>> run = fit("photos", val="photos_val", weights="runs/quickstart/source", out="runs/photos")
    """
    from restransfer.recipe.load import load_recipe
    from restransfer.recipe.plan import resolve

    choice = choose_recipe(data, val=val, val_split=val_split, model=model, weights=weights, image_size=image_size,
                           epochs=epochs)
    if say is not None:
        say("restransfer fit chose:")
        for reason in choice.reasons:
            say(f"  - {reason}")
    recipe = load_recipe(choice.recipe, overrides)
    plan = resolve(recipe, source=f"fit {data}", name=Path(choice.facts.path).stem)
    if dry_run:
        return plan
    from restransfer.recipe.engine import train

    out = Path(out) if out is not None else Path("runs") / plan.name
    run = train(plan, out=out, force=force, verbose=verbose)
    if say is not None:
        say(f"The recipe is {run.run_dir / 'recipe.yaml'}: `restransfer train {run.run_dir / 'recipe.yaml'}` "
            "trains it again.")
    return run
