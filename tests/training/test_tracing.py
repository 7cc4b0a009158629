"""Building the metrics and optimizer before fit leaves one trace of the training step."""

import keras
import numpy as np
import pytest

from restransfer.training.optimizers import build_optimizer
from restransfer.training.tracing import build_before_fit

pytestmark = pytest.mark.tensorflow


def compiled_model():
    inputs = keras.Input((4, 4, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x))
    model.compile(optimizer=build_optimizer("adamw", 0.01, weight_decay=1e-3), loss="categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")], jit_compile=False)
    return model


def traces_of_one_epoch(model, monkeypatch):
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    traced, step = [], TensorFlowTrainer.train_step
    monkeypatch.setattr(TensorFlowTrainer, "train_step", lambda self, data: (traced.append(1), step(self, data))[1])
    x = np.random.default_rng(0).normal(size=(6, 4, 4, 3)).astype("float32")
    history = model.fit(x, np.eye(3, dtype="float32")[np.arange(6) % 3], batch_size=3, epochs=1, verbose=0)
    return len(traced), history.history


def test_the_training_step_is_traced_once(monkeypatch):
    keras.utils.set_random_seed(0)
    plain = compiled_model()
    keras.utils.set_random_seed(0)
    built = compiled_model()
    assert build_before_fit(built)
    weights = [np.array(v) for v in built.weights]
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(weights, plain.weights))  # nothing trained
    assert built.optimizer.built and int(built.optimizer.iterations) == 0
    plain_traces, plain_history = traces_of_one_epoch(plain, monkeypatch)
    built_traces, built_history = traces_of_one_epoch(built, monkeypatch)
    assert (plain_traces, built_traces) == (2, 1)  # Keras alone traces twice: it creates variables in the first
    # The blank image left no trace in the metrics: the same epoch, the same numbers.
    np.testing.assert_allclose(built_history["loss"], plain_history["loss"], rtol=1e-6)
    np.testing.assert_allclose(built_history["accuracy"], plain_history["accuracy"], rtol=1e-6)


def test_nothing_is_built_for_an_uncompiled_model():
    model = compiled_model()
    fresh = keras.Model(model.inputs, model.outputs)
    assert build_before_fit(fresh) is False
