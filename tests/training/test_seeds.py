"""Seed generators set per epoch: what an epoch draws depends on (seed, epoch) only."""

import keras
import numpy as np
import pytest

from restransfer.training.seeds import epoch_seeds, random_generators, reseed


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,))
    hidden = keras.layers.Dropout(0.5)(keras.layers.Dense(16)(inputs))
    return keras.Model(inputs, keras.layers.Dropout(0.3, name="head_dropout")(hidden))


def test_dropout_masks_of_an_epoch_do_not_depend_on_the_epochs_drawn_before():
    model = _model()
    x = np.ones((4, 16), "float32")
    assert len(random_generators(model)) == 2  # both Dropout layers' generators, none of the weights

    def draw():
        return keras.ops.convert_to_numpy(model(x, training=True))

    reseed([model], 3, 2)
    epoch_two = [draw(), draw()]
    for _ in range(3):  # the run goes on: its generators move away from epoch 2's state
        draw()
    reseed([model], 3, 5)
    draw()
    reseed([model], 3, 2)
    np.testing.assert_array_equal(draw(), epoch_two[0])
    np.testing.assert_array_equal(draw(), epoch_two[1])
    reseed([model], 3, 3)
    assert not np.array_equal(draw(), epoch_two[0])
    other_seed = [epoch_seeds(seed, 2, 2) for seed in (3, 4)]
    assert not np.array_equal(*other_seed) and (epoch_seeds(3, 2, 2) < 2**31).all()


@pytest.mark.tensorflow
def test_augmentation_generators_of_every_kind_are_found_and_set():
    import tensorflow as tf

    from restransfer.data.augment import build_augment
    from restransfer.data.schema import AugmentConfig

    config = AugmentConfig.model_validate({"flip": "horizontal", "random_resized_crop": True, "mixup": 0.4,
                                           "cutmix": 1.0})
    augment = build_augment(config, (8, 8), seed=1)
    found = random_generators(augment.random_parts)
    assert sum(isinstance(g, tf.random.Generator) for g in found) == 2  # the crop and the MixUp/CutMix choice
    assert sum(isinstance(g, keras.random.SeedGenerator) for g in found) == 3  # flip, MixUp, CutMix
    images = tf.random.stateless_uniform((6, 8, 8, 3), (0, 1), maxval=255.0)
    labels = tf.one_hot([0, 1, 0, 1, 0, 1], 2)

    def draw():
        return augment(images, labels)[0].numpy()

    reseed([augment.random_parts], 1, 4)
    first = draw()
    draw()
    reseed([augment.random_parts], 1, 4)
    np.testing.assert_array_equal(draw(), first)
