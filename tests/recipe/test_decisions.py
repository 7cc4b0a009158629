"""Every `auto` is decided once, by `restransfer.recipe.decisions`, each with its reason; the engine only reads."""

import ast
import dataclasses
from pathlib import Path

import keras
import pytest
import yaml

import restransfer.recipe.engine as engine
from restransfer.cli import main
from restransfer.recipe.decisions import DataFacts, Decision, PhaseDecisions, RunDecisions, decide, explain
from restransfer.recipe.engine import build_model
from restransfer.recipe.plan import load_plan

TINY = {
    "model": {"name": "cifar_resnet20"},
    "data": {"source": "digits", "classes": [0, 1, 2], "per_class": 8, "val_per_class": 6, "batch_size": 8},
    "phases": [
        {"name": "head", "epochs": 1, "freeze": "all_but_head"},
        {"name": "finetune", "epochs": 2, "freeze_until": "conv3", "lr_multipliers": {"conv3": 0.1}},
        {"name": "all", "epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 0.02}},
    ],
    "distribution": {"lr_scaling": "linear", "base_batch_size": 4},
}
FACTS = DataFacts(num_train=24, num_val=18, class_names=("0", "1", "2"), train_counts=(8, 8, 8), train_batches=3,
                  batch_size=8)


def _all(record) -> dict:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


@pytest.fixture(scope="module")
def decided():
    plan = load_plan(TINY)
    keras.utils.set_random_seed(0)
    model = build_model(plan, num_classes=3)
    trainable = [layer.trainable for layer in model.layers]
    result = decide(plan, FACTS, model=model, accelerator=False, memory_budget=2**30)
    assert [layer.trainable for layer in model.layers] == trainable  # deciding leaves the model as it was
    return result


def test_every_decision_is_taken_with_a_reason(decided):
    records = [decided.decisions, *(phase.decisions for phase in decided.phases)]
    for record in records:
        for name, decision in _all(record).items():
            assert isinstance(decision, Decision), f"{name} was not decided: {decision!r}"
            assert decision.reason.strip(), f"{name} has no reason"
    assert len(_all(RunDecisions())) >= 6 and len(_all(PhaseDecisions())) >= 4


def test_the_values_follow_the_recipe_and_the_facts(decided):
    run = decided.decisions
    assert run.jit_compile == Decision(False, "auto: CPU only, XLA convolutions are slower there")
    assert run.lr_scale.value == 2.0 and "batch 8 over base batch 4" in run.lr_scale.reason
    assert run.head_init == Decision("random", "auto: random backbone")
    assert run.head_lr_multiplier.value == 1.0
    assert run.precise_bn == Decision(True, "auto: 24 training images <= 8192")
    assert run.steps_per_epoch.value == 3
    head, finetune, everything = decided.phases
    assert [p.decisions.learning_rate.value for p in decided.phases] == [0.002, 0.002, 0.04]
    assert head.decisions.lr_multipliers.value == {"head": 1.0}
    assert finetune.decisions.lr_multipliers.value == {"conv3": 0.1, "head": 1.0}
    assert head.decisions.feature_cache.value == "conv4"
    assert finetune.decisions.feature_cache.value == "conv2"
    assert everything.decisions.feature_cache == Decision(None, "the phase freezes no leading stage")
    assert head.decisions.precise_bn == Decision(False, "no BatchNorm layer trains in this phase")
    assert finetune.decisions.precise_bn == everything.decisions.precise_bn == run.precise_bn


def test_without_the_data_only_what_the_recipe_decides_is_taken():
    plan = load_plan(TINY, ["head.init=zeros", "precise_bn=false"])
    run = plan.decisions
    assert run.head_init == Decision("zeros", "zeros") and run.head_lr_multiplier.value == 10.0
    assert run.precise_bn == Decision(False, "off")
    assert run.jit_compile is None  # auto: asks the machine
    assert run.steps_per_epoch is None  # counts the data
    assert plan.phases[0].decisions.feature_cache is None  # sizes the built model's features
    assert plan.phases[1].decisions.lr_multipliers.value == {"conv3": 0.1, "head": 10.0}
    lines = explain(plan)
    assert "head_init: zeros (zeros)" in lines and "precise_bn: off (off)" in lines
    assert "steps_per_epoch: decided from the data when training (train.log lists it)" in lines


def test_the_engine_reads_the_plan_and_decides_nothing():
    tree = ast.parse(Path(engine.__file__).read_text())
    reads = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == "Run":
            continue
        if isinstance(node, ast.Attribute) and node.attr in ("recipe", "config"):
            reads.append(ast.unparse(node))
    # Run.recipe hands the caller the recipe it ran; nothing else in the engine reads the recipe.
    assert [r for r in reads if r != "self.plan.recipe"] == []
    assert "self.plan.recipe" in ast.unparse(next(n for n in tree.body if getattr(n, "name", "") == "Run"))
    deciders = ("resolve_head_init", "head_lr_multiplier", "precise_bn_enabled", "cache_decision",
                "resolve_jit_compile", "scaled_learning_rate", "recipe_blockers")
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert names.isdisjoint(deciders), names & set(deciders)


def test_validate_explain_prints_each_decision_with_its_reason(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**TINY, "jit_compile": False, "data": {**TINY["data"], "augment": {
        "flip": "horizontal"}}}))
    assert main(["validate", str(path), "--explain"]) == 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines()]
    assert "jit_compile: off (set in the recipe)" in lines
    assert "lr_scale: 2 (linear rule: batch 8 over base batch 4)" in lines
    assert "head_init: random (auto: random backbone)" in lines
    assert "learning_rate: 0.04 (0.02 x2, linear rule: batch 8 over base batch 4)" in lines
    assert lines.count("feature_cache: off (data.augment changes the images before the frozen stages)") == 2
    assert "precise_bn: decided from the data when training (train.log lists it)" in lines
    assert main(["validate", str(path)]) == 0
    assert "Decisions" not in capsys.readouterr().out
