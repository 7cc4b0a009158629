"""Animated WebP, recognised from its RIFF header without decoding (no TensorFlow here).

TensorFlow 2.21's WebP decoder frees memory twice on an animation and kills the process
("double free or corruption"), whatever ``expand_animations`` says. Every reader therefore
refuses animated WebPs before decoding: `data check`, training's data, prediction and the
exported serving graph (the TensorFlow twin is `restransfer.data.image_ops.webp_animated`).

A WebP is animated when its VP8X chunk sets the animation flag, or when an ANIM or ANMF chunk
is among its first ``MAX_WEBP_CHUNKS`` chunks (a file with the flag cleared still names them).
"""

from __future__ import annotations

ANIMATION_FLAG = 0x02
ANIMATION_CHUNKS = (b"ANIM", b"ANMF")
# Still images hold a handful of chunks (VP8X, ICCP, ALPH, VP8, EXIF, XMP).
MAX_WEBP_CHUNKS = 64
ANIMATED_WEBP_PROBLEM = ("it is an animated WebP (TensorFlow's WebP decoder crashes on "
                         "animations); save one frame as a still image")


def animated_webp(data: bytes) -> bool:
    """Whether ``data`` (a file's bytes, or at least its chunk headers) is an animated WebP."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    if data[12:16] == b"VP8X" and len(data) > 20 and data[20] & ANIMATION_FLAG:
        return True
    position = 12
    for _ in range(MAX_WEBP_CHUNKS):
        if position + 8 > len(data):
            return False
        if data[position:position + 4] in ANIMATION_CHUNKS:
            return True
        size = int.from_bytes(data[position + 4:position + 8], "little")
        position += 8 + size + size % 2  # chunks are padded to an even size
    return False
