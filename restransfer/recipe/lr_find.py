"""The learning-rate range test on a recipe's phase: its real model, freezing, optimizer and data.

``restransfer lr-find RECIPE --phase N`` and :func:`lr_find_plan` build what ``train`` builds for
that phase (the model with its weights, the phase's frozen stages, optimizer, weight decay,
per-stage rates, label smoothing and loss (logit-adjusted or class-weighted as the plan decides), and
the training batches with their augmentation) and run
``restransfer.training.lr_find.lr_find`` on it. A phase that trains on cached features
(``feature_cache``) is tested on them, as it trains. Nothing is written: no run folder and no
checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from restransfer.errors import ConfigError
from restransfer.recipe.plan import Plan
from restransfer.training.lr_find import DEFAULT_BETA, LRFindResult


def phase_index(plan: Plan, phase: str | int) -> int:
    """The 0-based index of a phase given by its number (1 = first, as the training log counts) or name."""
    names = [p.name for p in plan.phases]
    text = str(phase)
    if text.isdigit() and 1 <= int(text) <= len(names):
        return int(text) - 1
    if text in names:
        return names.index(text)
    listed = ", ".join(f"{i + 1} ({name})" for i, name in enumerate(names))
    raise ConfigError(f"--phase {text}: the recipe has no such phase; its phases are {listed}.")


def lr_find_plan(plan: Plan, *, phase: int = 0, min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 100,
                 beta: float = DEFAULT_BETA, divergence: float = 4.0,
                 say: Callable[[str], None] = print) -> LRFindResult:
    """Run the range test on phase ``phase`` (0-based) of a plan, on one device with the global batch.

    The model starts from the recipe's ``model.weights``: for a later phase, which in training
    starts from the earlier phases' weights, point ``model.weights`` at a run folder that trained
    them.

    Raises:
        ConfigError: no such phase, or bad bounds.
    """
    from restransfer.data import load_data
    from restransfer.data.pipeline import memory_budget
    from restransfer.models.stages import freeze_stages
    from restransfer.recipe.decisions import DataFacts, decide
    from restransfer.recipe.engine import build_model, init_head, phase_loss, phase_optimizer
    from restransfer.training.class_weights import weigh_batches
    from restransfer.training.feature_cache import cache_features
    from restransfer.training.lr_find import lr_find
    from restransfer.training.precision import dtype_policy, has_accelerator

    if not 0 <= phase < len(plan.phases):
        raise ConfigError(f"lr-find: phase {phase + 1} does not exist; the recipe has {len(plan.phases)}.")
    keras.utils.set_random_seed(plan.seed)
    with dtype_policy(plan.precision):
        # No run folder, so no file cache: it would be written there.
        bundle = load_data(**plan.data_options(**({"cache": "none"} if plan.data.cache == "file" else {})))
        model = build_model(plan, len(bundle.class_names))
        # The same decisions as training: how the head starts and learns, the feature cache, XLA.
        plan = decide(plan, DataFacts.of(bundle, plan.data.batch_size), model=model, accelerator=has_accelerator(),
                      memory_budget=memory_budget())
        step, decisions = plan.phases[phase], plan.decisions
        say(f"Head ({decisions.head_init.reason}): {init_head(model, bundle, decisions.head_init.value)}.")
        multipliers = dict(step.decisions.lr_multipliers.value)
        freeze_stages(model, step.frozen)
        trainer, data = model, bundle.train
        stage = step.decisions.feature_cache.value
        if stage is not None:
            cache = cache_features(model, stage, bundle.train_unaugmented, batch_size=plan.data.batch_size,
                                   seed=plan.seed, shuffle_buffer=plan.data.shuffle_buffer, drop_small_last=True)
            say(cache.describe())
            trainer, data = cache.split.suffix, cache.train
        if phase:
            say(f"Phase {phase + 1} starts from model.weights ({plan.model.weights}), not from what the earlier "
                "phases trained; --set model.weights=RUN_FOLDER starts from a run that trained them.")
        say(f"Range test on phase {phase + 1}/{len(plan.phases)} '{step.name}': {step.optimizer.name}, "
            f"rate {min_lr:g} -> {max_lr:g} in {steps} steps, frozen {list(step.frozen) or 'nothing'}, "
            f"batch {plan.data.batch_size}" + (f", lr multipliers {multipliers}" if multipliers else "") + ".")
        # The loss training uses: logit-adjusted, or weighted per image, as the plan decided.
        prior, weights = decisions.logit_adjustment.value, decisions.class_weights.value
        if weights is not None:
            say(f"Class weights ({decisions.class_weights.reason}) weigh the test's batches, as in training.")
        if prior is not None:
            say(f"The loss is logit-adjusted ({decisions.logit_adjustment.reason}), as in training.")
        data = weigh_batches(data, None if weights is None else np.array(list(weights.values()), np.float32))
        return lr_find(trainer, data, optimizer=lambda rate: phase_optimizer(model, step, rate, multipliers),
                       loss=phase_loss(step, decisions.loss.value, None if prior is None else list(prior.values())),
                       min_lr=min_lr, max_lr=max_lr, steps=steps, beta=beta, divergence=divergence,
                       jit_compile=decisions.jit_compile.value)
