"""Validate and pre-resize bin images once, at build time, so training never decodes full-size JPEGs every epoch.

JPEGs are decoded at reduced scale (``Image.draft``: the DCT does most of the downscaling) and only as far as the
target needs; the header is checked against a pixel limit before anything is decoded (decompression bombs).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from data.abid import IMAGE_CORRUPT, IMAGE_EMPTY, IMAGE_NOT_JPEG, IMAGE_TOO_LARGE, BadRecord

JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class Prepared:
    data: bytes
    original_size: tuple[int, int]


def prepare(data: bytes, shorter_side: int | None = 256, max_pixels: int = 40_000_000, quality: int = 90) -> Prepared:
    """Check one JPEG and return it with its shorter side resized to ``shorter_side`` (None keeps the bytes).

    Raises ``BadRecord`` for empty, non-JPEG, truncated/corrupt or oversized images. Images already small enough are
    fully decoded (to prove they are whole) but kept byte for byte.
    """
    if not data:
        raise BadRecord(IMAGE_EMPTY)
    if not data.startswith(JPEG_MAGIC):
        raise BadRecord(IMAGE_NOT_JPEG, f"starts with {data[:4]!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise BadRecord(IMAGE_TOO_LARGE, f"{width}x{height} is over {max_pixels} pixels")
            if shorter_side is None or min(width, height) <= shorter_side:
                image.load()
                return Prepared(data, (width, height))
            scale = shorter_side / min(width, height)
            target = (max(1, round(width * scale)), max(1, round(height * scale)))
            image.draft("RGB", target)
            image = image.convert("RGB").resize(target, Image.Resampling.BICUBIC)
    except BadRecord:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadRecord(IMAGE_CORRUPT, str(error)) from None
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return Prepared(out.getvalue(), (width, height))
