"""Warmup then decay, stepped by the optimizer's iteration count."""

import numpy as np
import pytest

from restransfer.training.schedules import WarmupSchedule


def values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_linear_warmup_then_cosine_to_min_lr():
    schedule = WarmupSchedule(0.1, total_steps=110, warmup_steps=10, decay="cosine", min_lr=0.001)
    warm = values(schedule, range(10))
    np.testing.assert_allclose(warm, 0.1 * np.arange(1, 11) / 10, rtol=1e-5)
    np.testing.assert_allclose(values(schedule, [10, 60, 110]), [0.1, 0.0505, 0.001], rtol=1e-4)


def test_step_decay_at_milestones():
    schedule = WarmupSchedule(1.0, total_steps=100, decay="step", milestones=[30, 60], gamma=0.1)
    np.testing.assert_allclose(values(schedule, [0, 29, 30, 59, 60, 99]), [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-5)


def test_constant_and_linear():
    assert values(WarmupSchedule(0.5, 10, decay="constant"), [0, 9]).tolist() == [0.5, 0.5]
    np.testing.assert_allclose(values(WarmupSchedule(1.0, 10, decay="linear"), [0, 5, 10]), [1, 0.5, 0], atol=1e-6)


def test_round_trips_through_config():
    schedule = WarmupSchedule(0.1, 50, warmup_steps=5, decay="step", milestones=[20], gamma=0.5)
    again = WarmupSchedule.from_config(schedule.get_config())
    np.testing.assert_allclose(values(again, range(50)), values(schedule, range(50)))


def test_unknown_decay():
    with pytest.raises(ValueError, match="cosine"):
        WarmupSchedule(0.1, 10, decay="exp")
