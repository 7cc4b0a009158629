"""Balanced accuracy as a Keras metric: the mean recall over the classes present, each epoch.

Keras has no such metric, and the run's checkpoint monitor (``val_balanced_accuracy``) needs it
per epoch without a second pass over the validation data. It keeps a confusion matrix over
``argmax(y_true)`` and ``argmax(y_pred)`` (soft MixUp labels count as their larger part) and
matches scikit-learn's ``balanced_accuracy_score``: classes without a true image are left out of
the mean.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="restransfer")
class BalancedAccuracy(keras.metrics.Metric):
    """Mean per-class recall of one-hot (or soft) labels against predicted probabilities.

    Args:
        num_classes: the classifier's outputs.
        name: the metric's name (``val_`` is prefixed on validation data).

    Example:
        >>> metric = BalancedAccuracy(2)
        >>> metric.update_state([[1, 0], [1, 0], [1, 0], [0, 1]], [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
        >>> float(metric.result())
        0.5
    """

    def __init__(self, num_classes: int, name: str = "balanced_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.matrix = self.add_variable(shape=(self.num_classes, self.num_classes), initializer="zeros",
                                        dtype="float32", name="confusion")

    def update_state(self, y_true, y_pred, sample_weight=None):
        # Counted unweighted: class weights change the loss, not what balanced accuracy measures.
        true = ops.one_hot(ops.argmax(y_true, axis=-1), self.num_classes, dtype="float32")
        predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes, dtype="float32")
        self.matrix.assign_add(ops.matmul(ops.transpose(true), predicted))

    def result(self):
        support = ops.sum(self.matrix, axis=1)
        present = ops.cast(support > 0, "float32")
        recall = ops.diagonal(self.matrix) / ops.maximum(support, 1.0)
        return ops.sum(recall * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.matrix.assign(ops.zeros((self.num_classes, self.num_classes), dtype="float32"))

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes}
