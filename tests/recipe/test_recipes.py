"""Every recipe under recipes/ validates; download paths are stood in for by local files."""

import json
from pathlib import Path

import pytest

from restransfer.recipe.load import load_recipe
from restransfer.recipe.plan import resolve

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def stand_in_run(folder: Path, model: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"model": model, "status": "finished"}))
    (folder / "model.keras").write_bytes(b"stand-in")
    return folder


def overrides_for(path: Path, tmp_path: Path) -> dict:
    """Local stand-ins for weights that the recipe would download or read from a previous run."""
    raw = load_raw(path)
    data = raw["data"]
    for key in ("path", "val_path", "test_path"):
        if data.get("source") == "csv" and key in data:  # a table the recipe's comment says how to make
            table = tmp_path / data[key]
            table.parent.mkdir(parents=True, exist_ok=True)
            table.write_text("path,labels\n0.png,1;2\n")
    weights = raw["model"].get("weights")
    if weights in (None, "none", "imagenet"):
        return {}
    if "runs/" in str(weights):
        return {"model.weights": str(stand_in_run(tmp_path / "source", raw["model"]["name"]))}
    stand_in = tmp_path / Path(weights).name
    stand_in.write_bytes(b"stand-in")
    return {"model.weights": str(stand_in)}


def load_raw(path):
    import yaml

    return yaml.safe_load(path.read_text())


def test_the_shipped_recipes_are_there():
    names = {p.name for p in RECIPES}
    assert {"quickstart_source.yaml", "quickstart_target.yaml", "quickstart_scratch.yaml"} <= names
    assert len(names) >= 6


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_validates(path, tmp_path):
    plan = resolve(load_recipe(path, overrides_for(path, tmp_path), base_dir=tmp_path), source=str(path))
    assert plan.phases and plan.model.name


def test_real_world_recipes_cover_the_issue():
    recipes = {p.name: load_raw(p) for p in RECIPES}
    imagenet = [r for r in recipes.values() if r["model"].get("weights") == "imagenet"]
    assert any(r["model"]["name"] == "resnet50" and r["data"]["source"] == "tfds" for r in imagenet)
    assert any(len(r["phases"]) == 2 and "freeze_until" in r["phases"][1] for r in imagenet)
    timm = [r for r in recipes.values() if str(r["model"].get("weights", "")).endswith(".safetensors")]
    assert timm and timm[0]["model"]["name"] == "resnext50_32x4d"


def test_target_recipe_fails_clearly_until_the_source_run_exists(tmp_path):
    from restransfer.errors import ConfigError

    target = Path(RECIPES[0]).parent / "quickstart_target.yaml"
    with pytest.raises(ConfigError, match=r"model\.weights: Weights \S*runs/quickstart/source do not exist"):
        resolve(load_recipe(target, base_dir=tmp_path))
    unfinished = tmp_path / "runs/quickstart/source"
    unfinished.mkdir(parents=True)
    (unfinished / "run.json").write_text('{"model": "cifar_resnet20", "status": "running"}')
    with pytest.raises(ConfigError, match=r"run folder without model.keras \(status: running\)"):
        resolve(load_recipe(target, base_dir=tmp_path))
    stand_in_run(tmp_path / "other", "cifar_resnet32")
    with pytest.raises(ConfigError, match="trained cifar_resnet32, but the model is cifar_resnet20"):
        resolve(load_recipe(target, {"model.weights": str(tmp_path / "other")}))
