"""`restransfer quickstart`: transfer learning on real data, offline, in a few minutes on a CPU.

1. pretrain ``cifar_resnet20`` on 42 letters drawn from matplotlib's fonts like the 8x8 digits
   (``recipes/quickstart_source.yaml``, the ``glyphs`` source);
2. fine-tune it on scikit-learn's handwritten digits 5-9 with 3 training images per class,
   conv1/conv2 frozen and a new head (``recipes/quickstart_target.yaml``, weights: the source
   run's folder);
3. train the same target from random weights as the baseline (``recipes/quickstart_scratch.yaml``);
4. print the comparison. All three run folders are kept under ``out``.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path


def quickstart(out: str | Path = "runs/quickstart", *, force: bool = False, verbose: int | str = "auto") -> dict:
    """Run the three quickstart recipes and return ``{"source": Run, "target": Run, "scratch": Run}``.

    ``verbose="auto"``: Keras' progress bar on a terminal, one line per epoch in a log.
    """
    from rich.console import Console

    from restransfer.recipe.engine import train
    from restransfer.recipe.plan import load_plan
    from restransfer.recipe.shipped import shipped_recipe

    out = Path(out).expanduser().resolve()
    # The table needs ~100 columns; rich assumes 80 when output is not a terminal.
    console = Console(width=max(Console().width, 100))
    runs = {}
    with ExitStack() as stack:
        recipe = {name: stack.enter_context(shipped_recipe(f"quickstart_{name}.yaml"))
                  for name in ("source", "target", "scratch")}
        console.rule(f"1/3 pretrain on {task(load_plan(recipe['source']))}")
        runs["source"] = train(load_plan(recipe["source"]), out=out / "source", force=force, verbose=verbose)
        # The target's Plan is resolved once the source run exists: its weights are that run.
        target = load_plan(recipe["target"], {"model.weights": str(out / "source")})
        console.rule(f"2/3 fine-tune on {task(target)}, {target.data.per_class} images per class")
        runs["target"] = train(target, out=out / "target", force=force, verbose=verbose)
        console.rule("3/3 baseline: the same target from scratch")
        runs["scratch"] = train(load_plan(recipe["scratch"]), out=out / "scratch", force=force, verbose=verbose)
    console.print(comparison_table(runs))
    # One seed of a 15-image task is one draw: say so next to the numbers.
    console.print(f"One seed on {runs['target'].metrics['final']['num_train']} training images is one draw: "
                  "`restransfer bench transfer` runs 5 seeds (docs/benchmarks.md has the results).",
                  markup=False, highlight=False)
    return runs


def task(plan) -> str:
    """What a quickstart run learns, in a few words: ``digits 5-9`` or ``42 letters``."""
    data = plan.data
    if data.source == "glyphs":
        from restransfer.data.glyphs import CHARACTERS

        return f"{len(data.classes or CHARACTERS)} letters"
    return f"digits {data.classes[0]}-{data.classes[-1]}"


def comparison_table(runs: dict):
    """A rich table: each run's task, weights, frozen stages, data and final validation scores."""
    from rich.table import Table

    table = Table(title="restransfer quickstart: transfer vs. from scratch (validation set)")
    for column in ("run", "task", "train", "weights", "frozen", "epochs", "val acc", "val loss", "s"):
        table.add_column(column, justify="left" if column in ("run", "task", "weights", "frozen") else "right",
                         no_wrap=True)
    for name, run in runs.items():
        plan, final = run.plan, run.metrics["final"]
        frozen = [s for s in plan.model.stages if any(s in p.frozen for p in plan.phases)]
        weights = plan.model.weights
        table.add_row(
            name, task(plan), str(final["num_train"]),
            {"run_folder": "source", "none": "random"}.get(weights.kind, weights.kind),
            ",".join(frozen) or "-", str(final["epochs"]), f"{final['val_accuracy']:.3f}",
            f"{final['val_loss']:.3f}", f"{final['seconds']:.0f}",
        )
    return table

