"""Norm comparison: one result per (norm, batch), scaled learning rates, an easy task learned."""

from dataclasses import replace

import numpy as np
import pytest

from restransfer.diagnostics.normalization import compare_norms
from restransfer.errors import ConfigError
from restransfer.models.specs import SPECS

pytestmark = pytest.mark.tensorflow

TINY = replace(SPECS["cifar_resnet20"], repeats=(1, 1, 1), widths=(8, 8, 8))


def bright_vs_dark(n, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    return rng.uniform(0, 80, (n, 32, 32, 3)).astype("float32") + 150 * labels[:, None, None, None], labels


def test_one_result_per_norm_and_batch_with_linearly_scaled_rates():
    x, y = bright_vs_dark(64, 0)
    xv, yv = bright_vs_dark(32, 1)
    seen = []
    results = compare_norms(x, y, xv, yv, model=TINY, norms=("batch", "group"), batch_sizes=(4, 16),
                            epochs=2, base_lr=0.04, reference_batch=16, on_result=seen.append)
    assert [(r.norm, r.batch_size) for r in results] == [("batch", 4), ("batch", 16), ("group", 4), ("group", 16)]
    assert seen == results
    assert [r.learning_rate for r in results] == pytest.approx([0.01, 0.04, 0.01, 0.04])
    assert [r.steps for r in results] == [32, 8, 32, 8]
    # Brightness is trivially learnable: every run should solve it from the same start.
    assert all(r.accuracy >= 0.9 for r in results), results


def test_bad_choices_are_refused():
    x, y = bright_vs_dark(4, 0)
    with pytest.raises(ConfigError, match=r"Unknown norms \['batchnorm'\]"):
        compare_norms(x, y, x, y, model=TINY, norms=("batchnorm",))
    with pytest.raises(ConfigError, match="batch_sizes must be positive"):
        compare_norms(x, y, x, y, model=TINY, batch_sizes=(0,))
