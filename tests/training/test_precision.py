"""Mixed precision: float32 head, automatic loss scaling, scoped policy; the XLA decision."""

import keras
import numpy as np
import pytest

import restransfer as rt
from restransfer.models.heads import classifier
from restransfer.training.optimizers import build_optimizer
from restransfer.training.precision import describe_precision, dtype_policy, has_accelerator, resolve_jit_compile


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_policy_is_scoped_and_keeps_the_head_float32(policy):
    before = keras.config.dtype_policy().name
    with dtype_policy(policy):
        backbone = rt.create_model("cifar_resnet20", include_top=False, input_shape=(32, 32, 3),
                                   preprocessing="auto")
        model = keras.Model(backbone.inputs, classifier(backbone.output, 4))
        model.compile(optimizer=build_optimizer("adamw", 1e-3), loss="categorical_crossentropy")
    assert keras.config.dtype_policy().name == before
    assert model.get_layer("conv2_block1_1_conv").compute_dtype == policy.split("_")[1]
    assert model.get_layer("conv2_block1_1_conv").variable_dtype == "float32"
    assert model.get_layer("predictions").compute_dtype == "float32"
    probabilities = model.predict_on_batch(np.random.uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
    # Keras 3 wraps the optimizer in a LossScaleOptimizer itself, for float16 only.
    scaled = type(model.optimizer).__name__ == "LossScaleOptimizer"
    assert scaled == (policy == "mixed_float16")
    assert ("loss scaling on" in describe_precision(model)) == scaled


def test_policy_is_restored_after_an_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with dtype_policy("mixed_bfloat16"):
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == before


def test_jit_compile_auto_follows_the_hardware_and_the_backend():
    on, reason = resolve_jit_compile("auto")
    assert on == (has_accelerator() or keras.backend.backend() == "jax") and reason.startswith("auto")
    assert resolve_jit_compile("auto", accelerator=True, backend="tensorflow")[0] is True
    assert resolve_jit_compile("auto", accelerator=False, backend="tensorflow") == (
        False, "auto: CPU only, XLA convolutions are slower there")
    # JAX has no kernels but XLA's: without jit every op is compiled and dispatched on its own.
    on, reason = resolve_jit_compile("auto", accelerator=False, backend="jax")
    assert on is True and "CPU under JAX" in reason
    assert resolve_jit_compile(False) == (False, "set in the recipe")
    assert resolve_jit_compile(True) == (True, "set in the recipe")
