"""Letters rendered from the fonts matplotlib ships, made to look like scikit-learn's digits.

A source task with many classes, offline: each image is one letter in one of 21 text fonts
(DejaVu Sans, Sans Mono and Serif, STIX and Computer Modern, roman, bold and italic), at a
random stroke width, rotation, shear, size and position, drawn in a 32 x 32 binary bitmap and
reduced to 8 x 8 by counting the set pixels of each 4 x 4 block (0..16), as the UCI optical
digits behind ``sklearn.datasets.load_digits`` were made. A network pretrained on these learns
strokes, curves and junctions of 8 x 8 characters without ever seeing a digit, so the
handwritten digits stay a task it has not seen.

Every image depends only on the seed, its class and its index, so splits are reproducible.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from restransfer.data.sources import Listing, Part, optical_counts_to_rgb

# Capitals and the lower-case letters whose shape differs from their capital once scaled to
# fill the box (c, o, s, u, v, w, x, z would duplicate a class; l duplicates I, p nearly P).
CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghijkmnqrty"
FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)
_CANVAS = 96  # drawing canvas (px) for a 48 px font, room for rotation and shear
_BITMAP = 32  # the optical digits' bitmap side; 4 x 4 blocks make the 8 x 8 image


@functools.cache
def _font(name: str):
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), 48)


def render_glyph(character: str, rng: np.random.Generator) -> np.ndarray:
    """One 8 x 8 image of ``character`` (integer counts 0..16), drawn with ``rng``'s choices.

    Example:
        >>> image = render_glyph("A", np.random.default_rng(0))
        >>> image.shape, int(image.max()) <= 16
        ((8, 8), True)
    """
    from PIL import Image, ImageDraw

    font = _font(FONTS[rng.integers(len(FONTS))])
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    ImageDraw.Draw(canvas).text((_CANVAS // 4, _CANVAS // 6), character, fill=255, font=font,
                                stroke_width=int(rng.integers(0, 3)), stroke_fill=255)
    angle, shear = np.deg2rad(rng.uniform(-12, 12)), rng.uniform(-0.25, 0.25)
    forward = np.array([[np.cos(angle), -np.sin(angle) + shear], [np.sin(angle), np.cos(angle)]])
    inverse = np.linalg.inv(forward)  # PIL maps output pixels back to input pixels
    centre = np.array([_CANVAS / 2, _CANVAS / 2])
    shift = centre - inverse @ centre
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE,
                              (*inverse[0], shift[0], *inverse[1], shift[1]), resample=Image.Resampling.BILINEAR)
    glyph = canvas.crop(canvas.getbbox())
    # Like the optical digits: the character fills most of the box, its aspect ratio kept.
    scale = _BITMAP * rng.uniform(0.8, 1.0) / max(glyph.size)
    width, height = (max(1, round(side * scale)) for side in glyph.size)
    glyph = np.asarray(glyph.resize((width, height), Image.Resampling.BILINEAR), np.float32)
    bitmap = np.zeros((_BITMAP, _BITMAP), bool)
    top, left = int(rng.integers(0, _BITMAP - height + 1)), int(rng.integers(0, _BITMAP - width + 1))
    bitmap[top:top + height, left:left + width] = glyph > 127.5
    return bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3))


@functools.lru_cache(maxsize=8)
def _rendered(characters: str, count: int, seed: int) -> np.ndarray:
    # [class, index, 8, 8]: image i of a class is the same for any count >= i + 1.
    return np.stack([np.stack([render_glyph(ch, np.random.default_rng([seed, ord(ch), i]))
                               for i in range(count)]) for ch in characters])


def glyphs_listing(classes: str | None, per_class: int, val_per_class: int, seed: int) -> Listing:
    """Rendered letters as float32 RGB 0..255 (like `digits_listing`): per class, the first
    ``per_class`` images train and the next ``val_per_class`` validate.

    Example:
        >>> listing = glyphs_listing("Ab", per_class=3, val_per_class=2, seed=0)
        >>> listing.class_names, listing.counts()
        (['A', 'b'], {'train': [3, 3], 'val': [2, 2]})
    """
    characters = "".join(CHARACTERS if classes is None else classes)
    counts = _rendered(characters, per_class + val_per_class, seed)
    images = optical_counts_to_rgb(counts)
    labels = np.arange(len(characters), dtype=np.int64)
    parts = {
        "train": Part(labels=labels.repeat(per_class), images=images[:, :per_class].reshape(-1, 8, 8, 3)),
        "val": Part(labels=labels.repeat(val_per_class), images=images[:, per_class:].reshape(-1, 8, 8, 3)),
    }
    return Listing(class_names=list(characters), parts=parts)
