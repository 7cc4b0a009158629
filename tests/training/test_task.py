"""The task's rules: which sources carry several labels, and the consequences the Plan decides."""

import numpy as np
import pytest

from restransfer.training.best_epoch import checkpoint_monitor, monitor_problem
from restransfer.training.task import (
    MULTI_LABEL_SOURCES,
    head_activation,
    loss_name,
    make_loss,
    metric_names,
    task_data_problem,
    task_source_problem,
)


@pytest.mark.parametrize("source", ["folder", "tfds", "digits", "glyphs"])
def test_single_label_sources_are_refused_for_multi_label_with_the_reason(source):
    problem = task_source_problem("multi_label", source)
    assert problem.startswith(f"the {source} source cannot carry several labels")
    assert "labels` column" in problem and "0/1 label matrix" in problem
    assert task_source_problem("single_label", source) is None


def test_csv_and_arrays_carry_multi_label_data():
    assert MULTI_LABEL_SOURCES == ("csv", "arrays")
    assert all(task_source_problem("multi_label", s) is None for s in MULTI_LABEL_SOURCES)


def test_data_of_the_other_kind_is_named():
    assert "task is single_label" in task_data_problem("single_label", True)
    assert "task is multi_label" in task_data_problem("multi_label", False)
    assert task_data_problem("multi_label", True) is None and task_data_problem("single_label", False) is None


def test_the_consequences_of_each_task():
    assert head_activation("multi_label")[0] == "sigmoid" and head_activation("single_label")[0] == "softmax"
    assert loss_name("multi_label")[0] == "binary_crossentropy"
    assert metric_names("multi_label")[0] == ("map", "exact_match")
    assert metric_names("single_label", 10)[0] == ("accuracy", "balanced_accuracy", "top5_accuracy")
    assert checkpoint_monitor("auto", class_weighted=False, task="multi_label")[0] == "val_map"
    assert checkpoint_monitor("val_loss", class_weighted=False, task="multi_label")[0] == "val_loss"
    assert "val_map or val_loss" in monitor_problem("val_accuracy", "multi_label")
    assert "multi-label figure" in monitor_problem("val_map", "single_label")


def test_binary_cross_entropy_smooths_each_label_as_keras_does():
    y = np.array([[1.0, 0.0, 1.0]], np.float32)
    p = np.array([[0.9, 0.2, 0.6]], np.float32)
    smoothed = y * 0.8 + 0.1
    expected = -np.mean(smoothed * np.log(p) + (1 - smoothed) * np.log(1 - p))
    assert float(make_loss("binary_crossentropy", 0.2)(y, p)) == pytest.approx(expected, rel=1e-5)
