"""The model code needs Keras alone: JAX (the GPU path) must work with no TensorFlow."""

import subprocess
import sys
import textwrap


def test_models_build_and_run_on_jax_without_importing_tensorflow():
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import restransfer
        model = restransfer.create_model("resnext50_32x4d", num_classes=3, input_shape=(32, 32, 3))
        probs = np.asarray(model(np.zeros((2, 32, 32, 3), "float32")))
        assert probs.shape == (2, 3), probs.shape
        assert np.allclose(probs.sum(-1), 1, atol=1e-5)
        import keras
        assert keras.backend.backend() == "jax", keras.backend.backend()
        assert "tensorflow" not in sys.modules, "model code imported TensorFlow"
        print("ok")
        """
    )
    env = {**__import__("os").environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
