"""The quickstart's recipes and its table name the tasks they run."""

from restransfer.quickstart import task
from restransfer.recipe.plan import load_plan
from restransfer.recipe.shipped import shipped_recipe


def test_the_quickstart_pretrains_on_letters_and_transfers_to_digits_it_never_saw():
    with shipped_recipe("quickstart_source.yaml") as source, shipped_recipe("quickstart_target.yaml") as target, \
            shipped_recipe("quickstart_scratch.yaml") as scratch:
        plans = {"source": load_plan(source), "target": load_plan(target, {"model.weights": "none"}),
                 "scratch": load_plan(scratch)}
    assert task(plans["source"]) == "42 letters"
    assert task(plans["target"]) == task(plans["scratch"]) == "digits 5-9"
    # The same budget for transfer and scratch, and the source's input size for the weights.
    for key in ("per_class", "val_per_class", "batch_size", "image_size"):
        assert getattr(plans["target"].data, key) == getattr(plans["scratch"].data, key)
    assert plans["target"].phases[0].epochs == plans["scratch"].phases[0].epochs
    assert plans["source"].data.image_size == plans["target"].data.image_size
