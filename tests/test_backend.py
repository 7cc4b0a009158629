"""The model code needs Keras alone: JAX (the GPU path) must work with no TensorFlow."""

import subprocess
import sys
import textwrap


def run_on_jax(code: str) -> None:
    """Run ``code`` in a fresh interpreter on the JAX backend; it must print "ok" last."""
    env = {**__import__("os").environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


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
    run_on_jax(code)


def test_feature_cache_split_and_lr_find_run_on_jax_without_importing_tensorflow():
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import keras
        import restransfer
        from restransfer.training.feature_cache import cache_blockers, split_model
        base = restransfer.create_model("cifar_resnet20", include_top=False, input_shape=(32, 32, 3),
                                        preprocessing="tf")
        model = restransfer.replace_head(base, num_classes=3)
        restransfer.freeze_stages(model, ["conv1", "conv2"])
        x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
        expected = np.asarray(model(x, training=False))
        for stage in ("conv2", "conv4"):
            split = split_model(model, stage)
            got = np.asarray(split.suffix(split.prefix(x, training=False), training=False))
            assert np.array_equal(got, expected), (stage, np.abs(got - expected).max())
        assert cache_blockers(model, ["conv1", "conv2"]) == []
        from restransfer.training.lr_find import lr_find
        before = [np.array(v) for v in model.variables]
        y = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
        result = lr_find(split.suffix, [(np.asarray(split.prefix(x)), y)], min_lr=1e-4, max_lr=1.0, steps=6)
        assert len(result.losses) >= 5 and result.stopped in ("max_lr", "diverged")
        assert all(np.array_equal(a, np.array(v)) for a, v in zip(before, model.variables))
        assert keras.backend.backend() == "jax", keras.backend.backend()
        assert "tensorflow" not in sys.modules, "the feature cache's model code imported TensorFlow"
        print("ok")
        """
    )
    run_on_jax(code)
