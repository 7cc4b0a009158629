"""The glyphs source: letters from matplotlib's fonts, drawn like scikit-learn's optical digits."""

import numpy as np
import pytest

from restransfer.data.glyphs import CHARACTERS, FONTS, glyphs_listing, render_glyph
from restransfer.data.schema import DataConfig


def _plain(character: str, font: str) -> np.ndarray:
    """The character in ``font`` with no stroke, rotation or shear, as a binary 64 x 64 bitmap."""
    from PIL import Image, ImageDraw

    from restransfer.data.glyphs import _font

    canvas = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(canvas).text((24, 16), character, fill=255, font=_font(font))
    glyph = canvas.crop(canvas.getbbox()).resize((64, 64))
    return np.asarray(glyph) > 127


@pytest.mark.parametrize("font", FONTS)
def test_every_font_draws_every_character_as_its_own_shape(font):
    # A font lacking a letter draws its missing-glyph box (or nothing): the same bitmap twice.
    bitmaps = {ch: _plain(ch, font) for ch in CHARACTERS}
    assert all(b.any() for b in bitmaps.values())
    flat = np.array([b.ravel() for b in bitmaps.values()])
    differing = (flat[:, None, :] != flat[None, :, :]).mean(-1)
    np.fill_diagonal(differing, 1.0)
    assert differing.min() > 0.02, f"{font}: two characters draw the same"


def test_images_are_optical_digit_counts_and_reproducible():
    first = render_glyph("g", np.random.default_rng([0, 1, 2]))
    again = render_glyph("g", np.random.default_rng([0, 1, 2]))
    np.testing.assert_array_equal(first, again)
    assert first.shape == (8, 8) and first.dtype.kind == "i"
    assert 0 <= first.min() and first.max() <= 16 and first.max() >= 8
    a = glyphs_listing("Aq", per_class=4, val_per_class=2, seed=0)
    b = glyphs_listing("Aq", per_class=2, val_per_class=4, seed=0)
    # Image i of a class does not depend on the split sizes; the seed changes every image.
    np.testing.assert_array_equal(a.parts["train"].images[[0, 1, 4, 5]], b.parts["train"].images)
    other = glyphs_listing("Aq", per_class=4, val_per_class=2, seed=1)
    assert not np.array_equal(a.parts["train"].images, other.parts["train"].images)
    assert a.class_names == ["A", "q"] and a.counts() == {"train": [4, 4], "val": [2, 2]}
    images = a.parts["train"].images
    assert images.shape == (8, 8, 8, 3) and images.dtype == np.float32 and images.max() <= 255


def test_the_classes_are_learnable_from_pixels():
    # Real signal, not noise: a logistic regression on the 64 pixels of 30 images per letter
    # recognises held-out letters far above chance (1/42).
    from sklearn.linear_model import LogisticRegression

    listing = glyphs_listing(None, per_class=30, val_per_class=10, seed=0)
    train, val = listing.parts["train"], listing.parts["val"]
    model = LogisticRegression(max_iter=2000).fit(train.images[..., 0].reshape(len(train), -1), train.labels)
    accuracy = model.score(val.images[..., 0].reshape(len(val), -1), val.labels)
    assert len(listing.class_names) == 42 and accuracy > 0.25  # measured 0.41


def test_load_data_reads_the_glyphs_source():
    from restransfer.data import load_data

    data = load_data(source="glyphs", classes="ABC", per_class=5, val_per_class=3, image_size=16, batch_size=4)
    assert data.class_names == ["A", "B", "C"] and (data.num_train, data.num_val) == (15, 9)
    x, _ = next(iter(data.train_unaugmented))
    assert x.shape[1:] == (16, 16, 3)


@pytest.mark.parametrize("classes, message", [("A", "at least two"), ("AAb", "distinct"), ("Az5", "'5', 'z'")])
def test_glyph_classes_validated(classes, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        DataConfig.model_validate({"source": "glyphs", "classes": classes})
