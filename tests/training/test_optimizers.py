"""Per-stage learning-rate multipliers really scale each stage's step, under SGD and AdamW."""

import keras
import numpy as np
import pytest

from restransfer.training.optimizers import build_optimizer, stage_multipliers


def two_stage_model():
    # Two identical stages, so equal gradients reach both and only the multiplier differs.
    inputs = keras.Input((4,), name="image")
    a = keras.layers.Dense(3, name="conv2_dense", kernel_initializer="ones")(inputs)
    b = keras.layers.Dense(3, name="conv3_dense", kernel_initializer="ones")(inputs)
    return keras.Model(inputs, [a, b])


def step_sizes(optimizer_name, steps=5, **kwargs):
    model = two_stage_model()
    multipliers = stage_multipliers(model, {"conv3": 0.1})
    optimizer = build_optimizer(optimizer_name, 0.01, lr_multipliers=multipliers, **kwargs)
    variables = model.trainable_variables
    before = [np.array(v) for v in variables]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        grad = rng.normal(size=(4, 3)).astype("float32")
        bias = rng.normal(size=(3,)).astype("float32")
        optimizer.apply([grad, bias, grad, bias], variables)
    moved = [np.abs(np.array(v) - b).sum() for v, b in zip(variables, before)]
    paths = [v.path for v in variables]
    return dict(zip(paths, moved)), multipliers


@pytest.mark.parametrize("name,kwargs", [("sgd", {"momentum": 0.9}), ("adamw", {"weight_decay": 0.05}),
                                         ("rmsprop", {})])
def test_stage_with_multiplier_0_1_moves_10x_less(name, kwargs):
    moved, multipliers = step_sizes(name, **kwargs)
    assert multipliers == {"conv3_dense/kernel": 0.1, "conv3_dense/bias": 0.1}
    ratio = moved["conv3_dense/kernel"] / moved["conv2_dense/kernel"]
    assert ratio == pytest.approx(0.1, rel=0.02)
    assert moved["conv3_dense/bias"] / moved["conv2_dense/bias"] == pytest.approx(0.1, rel=0.02)


def test_scaling_gradients_would_not_slow_adam():
    # Why the multiplier scales rates: Adam normalises the gradient, so a 0.1x gradient moves as far.
    moves = []
    for scale in (1.0, 0.1):
        variable = keras.Variable(np.ones(3, "float32"))
        optimizer = keras.optimizers.Adam(0.01)
        for _ in range(5):
            optimizer.apply([np.full(3, scale, "float32")], [variable])
        moves.append(float(np.abs(np.array(variable) - 1).sum()))
    assert moves[1] == pytest.approx(moves[0], rel=1e-3)


def test_weight_decay_is_decoupled_scaled_and_skips_biases():
    model = two_stage_model()
    optimizer = build_optimizer("sgd", 0.1, weight_decay=0.5, momentum=0.0,
                                lr_multipliers=stage_multipliers(model, {"conv3": 0.1}))
    zeros = [np.zeros(v.shape, "float32") for v in model.trainable_variables]
    optimizer.apply(zeros, model.trainable_variables)
    kernel2, bias2, kernel3, bias3 = (np.array(v) for v in model.trainable_variables)
    np.testing.assert_allclose(kernel2, 1 - 0.1 * 0.5, rtol=1e-6)       # w -= lr * decay * w
    np.testing.assert_allclose(kernel3, 1 - 0.01 * 0.5, rtol=1e-6)      # with the stage's 0.1 rate
    np.testing.assert_array_equal(bias2, 0.0)
    np.testing.assert_array_equal(bias3, 0.0)


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="sgd"):
        build_optimizer("lamb", 0.1)
