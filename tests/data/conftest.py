"""Real image files on disk, good and broken, for the data tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def image_bytes(fmt: str = "JPEG", mode: str = "RGB", size: tuple[int, int] = (48, 40),
                seed: int = 0) -> bytes:
    """Encoded bytes of a smooth random image (``size`` is width, height)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize(size, Image.BILINEAR)
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8))
        image = image.convert("RGBA")
        image.putalpha(alpha)
    elif mode == "P":
        image = image.convert("P")
    elif mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_folder(root: Path, classes: dict[str, int], size=(48, 40), seed: int = 0) -> Path:
    """``root/<class>/<i>.jpg`` with the given number of distinct JPEGs per class."""
    for c, (name, count) in enumerate(classes.items()):
        for i in range(count):
            write(root / name / f"{i:03d}.jpg", image_bytes(size=size, seed=seed + 1000 * c + i))
    return root


@pytest.fixture(autouse=True)
def _check_cache(tmp_path_factory, monkeypatch):
    # Keep the per-file check cache out of the real home folder.
    monkeypatch.setenv("RESTRANSFER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Two classes of good images in every supported flavour, plus junk and broken files."""
    root = make_folder(tmp_path / "messy", {"cat": 4, "dog": 4})
    write(root / "cat" / "rgba.png", image_bytes("PNG", "RGBA", seed=1))
    write(root / "cat" / "gray.jpg", image_bytes("JPEG", "L", seed=2))
    write(root / "cat" / "cmyk.jpg", image_bytes("JPEG", "CMYK", seed=3))
    write(root / "dog" / "anim.gif", image_bytes("GIF", "P", seed=4))
    write(root / "dog" / "pic.bmp", image_bytes("BMP", seed=5))
    write(root / "dog" / "pic.webp", image_bytes("WEBP", seed=6))
    write(root / "dog" / "liar.jpg", image_bytes("PNG", seed=7))  # a PNG named .jpg: fine
    write(root / "dog" / ".DS_Store", b"\0\0\0\1Bud1")
    write(root / "dog" / "notes.txt", b"not an image")
    write(root / ".hidden" / "x.jpg", image_bytes(seed=8))
    return root


def break_folder(root: Path) -> dict[str, Path]:
    """Add the three kinds of files that stop training; return them by kind."""
    good = image_bytes(seed=9, size=(64, 64))
    return {
        "truncated": write(root / "cat" / "truncated.jpg", good[: len(good) // 2]),
        "text": write(root / "dog" / "text.png", b"hello, I am text"),
        "empty": write(root / "dog" / "empty.jpg", b""),
    }


def huge_png(width: int = 23000, height: int = 23000) -> bytes:
    """A valid PNG header declaring ``width x height`` RGB pixels, with only a few rows of data:
    a few KB on disk that would take ``3 * width * height`` bytes to decode."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = zlib.compress(b"\0" * (1 + 3 * width) * 20)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def animated_webp(frames: int = 5, size: tuple[int, int] = (16, 16)) -> bytes:
    """A small animated WebP (TensorFlow 2.21's WebP decoder crashes the process on it)."""
    images = [Image.new("RGB", size, (40 * i, 90, 200 - 30 * i)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "WEBP", save_all=True, append_images=images[1:], duration=50, loop=0)
    return buffer.getvalue()


def run_python(code: str, timeout: float = 300):
    """Run ``code`` in a fresh interpreter: a native crash fails the test, not pytest."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=Path(__file__).resolve().parents[2])
