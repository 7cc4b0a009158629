"""The kept epoch and early stopping, read from history rows as Keras' EarlyStopping counts."""

import numpy as np
import pytest

from restransfer.training.best_epoch import best_row, checkpoint_monitor, epochs_without_improvement, should_stop


def rows(values, key="val_accuracy"):
    return [{"epoch": i + 1, key: v} for i, v in enumerate(values)]


def test_monitor_auto_follows_the_class_weights():
    assert checkpoint_monitor("auto", class_weighted=False)[0] == "val_accuracy"
    assert checkpoint_monitor("auto", class_weighted=True)[0] == "val_balanced_accuracy"


def test_best_row_is_the_earliest_best_and_lower_wins_for_the_loss():
    assert best_row(rows([0.5, 0.8, 0.8, 0.6]), "val_accuracy")["epoch"] == 2
    assert best_row(rows([1.2, 0.9, 1.0], "val_loss"), "val_loss")["epoch"] == 2
    assert best_row(rows([float("nan"), 0.1]), "val_accuracy")["epoch"] == 2


@pytest.mark.parametrize("values,patience,min_delta", [
    ([0.5, 0.6, 0.6, 0.59, 0.7, 0.7, 0.7], 2, 0.0),
    ([0.5, 0.52, 0.54, 0.56, 0.58], 2, 0.03),
    ([0.5, 0.6, 0.55, 0.62, 0.61], 3, 0.0),
])
def test_stops_where_keras_early_stopping_stops(values, patience, min_delta):
    import keras

    callback = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=patience, min_delta=min_delta,
                                             mode="max")

    class Model:
        stop_training = False

    callback.set_model(Model())
    callback.on_train_begin()
    keras_stop = None
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {"val_accuracy": value})
        if callback.model.stop_training:
            keras_stop = epoch + 1
            break
    ours = next((i for i in range(1, len(values) + 1)
                 if should_stop(rows(values[:i]), "val_accuracy", patience, min_delta)), None)
    assert ours == keras_stop
    assert epochs_without_improvement(rows(values), "val_accuracy", min_delta) >= 0
    np.testing.assert_equal(ours is None, keras_stop is None)
