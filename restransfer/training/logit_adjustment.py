"""The logit-adjusted cross-entropy (Menon et al. 2021, "Long-tail learning via logit adjustment").

Training minimises the cross-entropy of ``softmax(z + tau * log(prior))`` instead of
``softmax(z)``: the loss sees each class's logit raised by the log of its share of the training
images, so the logits ``z`` the model outputs learn to leave the class frequencies out, and their
argmax targets the balanced error. Unlike class weights it changes the margin each class needs,
not how much each image's loss counts, which still acts once a small training set is fitted
perfectly (Byrd & Lipton 2019: importance weights lose their effect on separable data).

The model outputs probabilities ``p = softmax(z)``, so the loss works on them: ``log softmax(z +
a) = log p + a - logsumexp(log p + a)``. Labels may be soft (MixUp, CutMix, label smoothing).

The paper's other form, post-hoc adjustment, trains with the plain loss and predicts with
``softmax(z - tau * log(prior))`` (`fold_prior`, folded into the classifier's bias): the model
learns the training frequencies and they are divided out afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

# Keras' own clip of probabilities before a log (CategoricalCrossentropy, from_logits=False).
_EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="restransfer")
class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Cross-entropy of probabilities shifted by ``tau * log(prior)`` before the softmax.

    Args:
        prior: each class's share of the training images, in class order (sums to 1).
        tau: the adjustment's strength (1: the paper's default).
        label_smoothing: as ``keras.losses.CategoricalCrossentropy``'s.

    Example:
        >>> loss = LogitAdjustedCrossentropy([0.5, 0.5])  # a uniform prior changes nothing
        >>> round(float(loss(np.array([[1.0, 0.0]]), np.array([[0.8, 0.2]]))), 4)
        0.2231
    """

    def __init__(self, prior: Sequence[float], tau: float = 1.0, label_smoothing: float = 0.0,
                 name: str = "logit_adjusted_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.prior = [float(p) for p in prior]
        self.tau = float(tau)
        self.label_smoothing = float(label_smoothing)
        self._shift = np.float32(self.tau) * np.log(np.asarray(self.prior, np.float32))

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        if self.label_smoothing:
            classes = ops.cast(ops.shape(y_true)[-1], "float32")
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / classes
        log_p = ops.log(ops.clip(ops.cast(y_pred, "float32"), _EPSILON, 1.0))
        adjusted = log_p + ops.convert_to_tensor(self._shift)
        log_q = adjusted - ops.logsumexp(adjusted, axis=-1, keepdims=True)
        return -ops.sum(y_true * log_q, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "prior": self.prior, "tau": self.tau, "label_smoothing": self.label_smoothing}



def fold_prior(model: keras.Model, prior: Sequence[float], tau: float = 1.0) -> None:
    """Lower the classifier's logits by ``tau * log(prior)`` in place: post-hoc logit adjustment.

    The ``predictions`` layer's bias falls by ``tau * log(prior_c)`` per class, so the model
    predicts ``softmax(z - tau * log(prior))``: its probabilities divided by ``prior ** tau`` and
    renormalised. A uniform prior changes nothing.

    Raises:
        ConfigError: the prior does not match the classifier's width, or holds a share <= 0.
    """
    from restransfer.errors import ConfigError
    from restransfer.training.calibration import classifier_layer

    layer = classifier_layer(model)
    prior = np.asarray(prior, np.float64)
    kernel, *rest = layer.get_weights()
    if not rest:
        raise ConfigError(f"The classifier '{layer.name}' of model {model.name} has no bias to adjust; build it "
                          "with restransfer.models.heads.classifier.")
    bias = rest[0]
    if prior.shape != bias.shape or not np.all(prior > 0):
        raise ConfigError(f"Post-hoc logit adjustment needs one positive share per class ({bias.shape[0]}); "
                          f"received {prior.tolist()}.")
    layer.set_weights([kernel, (bias - tau * np.log(prior)).astype(bias.dtype), *rest[1:]])
