"""Random state set per epoch: what an epoch draws depends on the seed and its number only.

Dropout and augmentation draw from seed generators (``keras.random.SeedGenerator``, and
``tf.random.Generator`` in keras-cv layers and the random crop) whose state advances with every
batch. That state is not among a model's weights, so a run resumed from a checkpoint in a new
process would start its next epoch from the generators' first state and draw other masks and
flips than the uninterrupted run. `reseed` sets every generator's state from ``(seed, epoch,
position)`` at each epoch's start (the `EpochSeeds` callback), which makes epoch ``k`` the same
in any process, however many epochs ran before it there; nothing needs to be checkpointed.

Backend-agnostic: Keras' generators are assigned through their variables; a
``tf.random.Generator`` is recognised by its ``reset_from_seed`` method.
"""

from __future__ import annotations

from collections.abc import Iterable

import keras
import numpy as np

__all__ = ["random_generators", "reseed", "epoch_seeds"]

# How far `random_generators` looks into nested layers, lists and dicts.
_DEPTH = 16


def random_generators(*owners: object) -> list:
    """Every seed generator reachable from ``owners``, each once, in a fixed order.

    Args:
        owners: Keras layers or models (their attributes are searched, nested layers included),
            lists, tuples or dicts of them, or generators themselves.

    Returns:
        The ``keras.random.SeedGenerator`` and ``tf.random.Generator`` objects found, in the
        order of a depth-first walk through the objects' attributes (their creation order), so
        the same code finds them in the same order in any process.
    """
    found: list = []
    seen: set[int] = set()

    def visit(item: object, depth: int) -> None:
        if item is None or id(item) in seen or depth > _DEPTH:
            return
        seen.add(id(item))
        if isinstance(item, keras.random.SeedGenerator) or _is_tf_generator(item):
            found.append(item)
            return
        if isinstance(item, dict):
            children: Iterable = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = item
        elif isinstance(item, keras.layers.Layer):
            children = list(vars(item).values())
        else:
            return
        for child in children:
            visit(child, depth + 1)

    for owner in owners:
        visit(owner, 0)
    return found


def _is_tf_generator(item: object) -> bool:
    return callable(getattr(item, "reset_from_seed", None)) and hasattr(item, "make_seeds")


def epoch_seeds(seed: int, epoch: int, count: int) -> np.ndarray:
    """``count`` pairs of 31-bit seeds for ``epoch``: a function of ``(seed, epoch)`` only."""
    words = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2 * count, dtype=np.uint32)
    # 31 bits: valid for every backend's seed dtype (int64 on TensorFlow, uint32 on JAX).
    return (words & 0x7FFFFFFF).astype(np.int64).reshape(count, 2)


def reseed(owners: Iterable[object], seed: int, epoch: int) -> int:
    """Set the state of every seed generator of ``owners`` (`random_generators`) for ``epoch``.

    Returns:
        The number of generators set.
    """
    generators = random_generators(*owners)
    for generator, (first, second) in zip(generators, epoch_seeds(seed, epoch, len(generators))):
        if isinstance(generator, keras.random.SeedGenerator):
            state = generator.state
            state.assign(np.array([first, second]).astype(keras.backend.standardize_dtype(state.dtype)))
        else:
            generator.reset_from_seed(int(first) << 31 | int(second))
    return len(generators)
