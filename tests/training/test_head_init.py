"""A head starts at zero or from a probe fitted on the training images' pooled features."""

import keras
import numpy as np
import pytest

from restransfer.errors import ConfigError
from restransfer.models.heads import replace_head
from restransfer.models.registry import create_model
from restransfer.training.head_init import head_lr_multiplier, init_head_from_probe, resolve_head_init, zero_classifier


def small_classifier(hidden=None):
    base = create_model("cifar_resnet20", num_classes=3, input_shape=(32, 32, 3))
    return replace_head(base, num_classes=3, dropout=0.2, hidden=hidden)


def test_probe_init_gives_the_probes_predictions_and_keeps_the_backbone():
    from restransfer.training.linear_probe import fit_softmax_probe

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(24, 32, 32, 3)).astype("float32")
    images[8:16] *= 0.5  # three brightness groups: separable pooled features
    images[16:] *= 0.1
    labels = np.repeat(np.arange(3), 8)
    model = small_classifier()
    backbone = [np.array(w) for w in model.weights if not w.path.startswith("predictions")]
    batches = [(images[i:i + 10], np.eye(3)[labels[i:i + 10]]) for i in range(0, 24, 10)]
    result = init_head_from_probe(model, batches)
    assert result.images == 24 and result.train_accuracy == 1.0
    features = keras.Model(model.inputs, model.get_layer("avg_pool").output).predict(images, verbose=0)
    kernel, bias = fit_softmax_probe(features, labels, 3)
    np.testing.assert_allclose(np.asarray(model.get_layer("predictions").kernel), kernel, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(model.predict(images, verbose=0).argmax(-1), labels)
    for before, after in zip(backbone, [w for w in model.weights if not w.path.startswith("predictions")]):
        assert np.array_equal(before, np.asarray(after))


def test_zero_classifier_predicts_uniformly():
    model = small_classifier()
    zero_classifier(model)
    probabilities = model.predict(np.full((2, 32, 32, 3), 100.0, "float32"), verbose=0)
    np.testing.assert_allclose(probabilities, 1 / 3, rtol=1e-6)


def test_probe_init_refuses_a_hidden_head():
    with pytest.raises(ConfigError, match="remove head.hidden"):
        init_head_from_probe(small_classifier(hidden=8), (np.zeros((3, 32, 32, 3), "float32"), np.arange(3)))


@pytest.mark.parametrize(("pretrained", "head_only", "hidden", "num_train", "expected"), [
    (True, True, None, 50, "probe"),        # LP: the fitted probe is where a head-only phase goes
    (True, True, None, 100_000, "zeros"),   # too many images for the probe's forward pass
    (True, True, 64, 50, "random"),         # the probe is linear
    (True, False, None, 50, "random"),      # the backbone fine-tunes from the first phase
    (False, False, None, 50, "random"),     # a zero head passes a random backbone no gradient
    (False, True, None, 50, "random"),
])
def test_auto_head_init(pretrained, head_only, hidden, num_train, expected):
    init, why = resolve_head_init("auto", pretrained=pretrained, head_only=head_only, hidden=hidden,
                                  num_train=num_train)
    assert init == expected and why.startswith("auto: ")
    assert resolve_head_init("zeros", pretrained=True, head_only=True, hidden=None, num_train=50) == ("zeros", "zeros")


def test_only_a_zero_head_gets_the_tenfold_rate():
    assert head_lr_multiplier("zeros", None) == 10.0
    assert head_lr_multiplier("random", None) == head_lr_multiplier("probe", None) == 1.0
    assert head_lr_multiplier("zeros", 2) == 2.0
