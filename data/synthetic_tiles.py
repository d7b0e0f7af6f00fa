"""Texture tiles for synthetic bins, drawn once per process from fixed seeds so each bin only crops, tints and pastes
them: printed surfaces, packaging photos, crumpled plastic and fabric folds, elastic strap bands, pod tag cards,
sensor noise, light fall-off, glare and bottle shading. Fixed seeds keep every bin a function of (seed, index) alone.
"""

from __future__ import annotations

import random
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

MAX_SIDE = 1100
LIGHT_SIDE = 660  # the light tile covers the largest render canvas (0.58 x MAX_SIDE)
TILE = 128
TAG_COLOURS = ((222, 118, 64), (232, 150, 160), (78, 118, 170), (110, 112, 118), (200, 72, 64), (96, 160, 200))
# Tags are pasted after the camera's lookup table, so they carry the typical warm cast themselves.
TAG_LIGHT = [min(255, int(v * f)) for f in (0.97, 0.86, 0.74) for v in range(256)]


def _smooth_noise(gen: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """Noise with features about ``size / cells`` wide, 0..1: for photos, wrinkles and crumples."""
    coarse = Image.fromarray((gen.random((cells, cells)) * 255).astype(np.uint8))
    return np.asarray(coarse.resize(shape[::-1], Image.Resampling.BICUBIC), dtype=np.float32) / 255


@cache
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@cache
def print_tiles() -> tuple[Image.Image, ...]:
    """Printed surfaces as ink masks: text lines, barcodes, logos and labels, in a few dozen layouts."""
    rng = random.Random("abid-synthetic-prints")
    words = ("NEW", "PREMIUM", "Pro", "ultra", "2-PACK", "SPF 50", "USB-C", "organic", "LED", "XL", "kids", "fresh",
             "HD", "Series", "max", "eco", "deluxe", "100%", "Size M", "classic")
    tiles = []
    for k in range(48):
        tile = Image.new("L", (TILE, TILE), 0)
        draw = ImageDraw.Draw(tile)
        if k % 3 == 0:  # a logo: a shape and a big word
            x, y, r = rng.randint(10, 60), rng.randint(8, 50), rng.randint(12, 30)
            draw.ellipse((x, y, x + 2 * r, y + r * rng.uniform(1, 2)), fill=255 if rng.random() < 0.5 else 0,
                         outline=255, width=3)
            draw.text((rng.randint(4, 30), rng.randint(60, 90)), rng.choice(words), fill=255, font=_font(22))
        for _ in range(rng.randint(2, 6)):  # text lines
            draw.text((rng.randint(2, 40), rng.randint(0, 118)), " ".join(rng.choices(words, k=3)), fill=255,
                      font=_font(rng.choice((9, 11, 14))))
        if k % 2 == 0:  # a barcode on a white label
            x, y = rng.randint(4, 70), rng.randint(70, 100)
            draw.rectangle((x - 3, y - 3, x + 50, y + 24), fill=0)
            for bar in range(40):
                if rng.random() < 0.5:
                    draw.line(((x + bar, y), (x + bar, y + 20)), fill=255)
        tiles.append(tile.filter(ImageFilter.BoxBlur(0.6)))
    return tuple(tiles)


@cache
def photo_tiles() -> tuple[Image.Image, ...]:
    """Photo-like pictures on packaging: smooth colour blobs with some detail."""
    gen = np.random.default_rng(12)
    tiles = []
    for _ in range(16):
        colour = np.stack([_smooth_noise(gen, (TILE, TILE), 4) for _ in range(3)], -1)
        detail = _smooth_noise(gen, (TILE, TILE), 24)[..., None]
        colour = colour.mean(-1, keepdims=True) + 0.35 * (colour - colour.mean(-1, keepdims=True))  # washed out
        tiles.append(Image.fromarray((255 * np.clip(colour * (0.6 + 0.6 * detail), 0, 1)).astype(np.uint8)))
    return tuple(tiles)


@cache
def crumple_tiles() -> tuple[Image.Image, ...]:
    """Brightness of crumpled plastic (sharp ridges, for glints) and of folded soft goods (gentle)."""
    gen = np.random.default_rng(5)
    tiles = []
    for cells in (10, 14, 6):
        ridges = 1 - np.abs(2 * _smooth_noise(gen, (TILE, TILE), cells) - 1)
        if cells > 8:  # plastic: narrow bright ridges
            tiles.append(Image.fromarray((255 * ridges ** 6).astype(np.uint8)))
        else:  # fabric: folds darken it to 45% at most
            tiles.append(Image.fromarray((255 * (0.45 + 0.55 * ridges ** 1.5)).astype(np.uint8)))
    return tuple(tiles)


@cache
def strap_tiles(pitch: float) -> tuple[Image.Image, ...]:
    """Bands of elastic strands as coverage masks, 44 strands ``pitch`` pixels apart, one set per pitch in use, so a
    bin only crops one (no resampling per bin)."""
    gen = np.random.default_rng(int(pitch * 10))
    width, strands = 1200, 44
    height = int(pitch * strands) + 3
    columns = np.arange(width)
    thick = max(1.0, pitch * 0.4)  # a strand covers about 40% of its pitch
    tiles = []
    for _ in range(3):
        # each strand wanders a little along its length, and its strength varies over ~30 px
        wander = np.cumsum(gen.normal(0, 0.01, (strands, width)), axis=1) + gen.normal(0, 0.08 * pitch, (strands, 1))
        centres = (np.arange(strands)[:, None] + 0.5) * pitch + wander
        strengths = gen.uniform(0.5, 0.95, (strands, 1)) * (0.7 + 0.3 * _smooth_noise(gen, (strands, width), 40))
        alpha = np.zeros((height, width), np.float32)
        for offset in range(int(np.ceil(thick)) + 1):  # the rows a strand covers, the last one partly
            rows = np.clip((centres - thick / 2 + offset).astype(int), 0, height - 1)
            cover = strengths * min(1.0, thick - offset + 0.5)
            for first in (0, 1):  # strands two pitches apart never share a pixel, so each half is one assignment
                where = rows[first::2], columns
                alpha[where] = np.maximum(alpha[where], cover[first::2])
        blurred = np.asarray(Image.fromarray((255 * alpha).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.3 * pitch)))
        fuzz = 4 * gen.standard_normal((height, width), dtype=np.float32)  # fibre and sensor grain, where a strand is
        tiles.append(Image.fromarray(np.clip(blurred + fuzz * (blurred > 20), 0, 255).astype(np.uint8)))
    return tuple(tiles)


@cache
def tag_tiles() -> tuple[Image.Image, ...]:
    """Pod tag cards like "2E↑ [QR]": a coloured card, a white label with the pod's name, a white code square, under
    the typical warm cast."""
    rng = random.Random("abid-synthetic-tags")
    tags = []
    for k in range(36):
        card = Image.new("RGB", (180, 40), TAG_COLOURS[k % len(TAG_COLOURS)])
        draw = ImageDraw.Draw(card)
        draw.rectangle((8, 5, 86, 35), fill=(240, 240, 236))
        name = f"{rng.randint(1, 4)}{rng.choice('ABCDEFGH')}"
        draw.text((14, 4), name, fill=(18, 18, 20), font=_font(28))
        draw.polygon(((66, 8), (74, 18), (69, 18), (69, 32), (63, 32), (63, 18), (58, 18)), fill=(18, 18, 20))
        draw.rectangle((110, 4, 142, 36), fill=(240, 240, 236))
        for cell in range(49):
            if rng.random() < 0.5 or cell in (0, 6, 42):
                x, y = 112 + 4 * (cell % 7), 6 + 4 * (cell // 7)
                draw.rectangle((x, y, x + 3, y + 3), fill=(18, 18, 20))
        tags.append(card.filter(ImageFilter.BoxBlur(0.5)).point(TAG_LIGHT))
    return tuple(tags)


@cache
def noise_tile(sd: int) -> Image.Image:
    """Sensor noise around 128 with fabric weave in it; each image crops its own window."""
    gen = np.random.default_rng(sd)
    noise = gen.normal(128, sd, (MAX_SIDE, MAX_SIDE)) + 6 * (_smooth_noise(gen, (MAX_SIDE, MAX_SIDE), 60) - 0.5)
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))


@cache
def light_tile() -> Image.Image:
    """Light falling off from the centre of a tile twice the largest image: a window of it is a vignette or a
    gradient, depending on where it sits."""
    distance = Image.radial_gradient("L").resize((LIGHT_SIDE, LIGHT_SIDE), Image.Resampling.BILINEAR)
    return distance.point([int(235 * (1 - 0.22 * v / 255)) for v in range(256)])


@cache
def glare_tile() -> Image.Image:
    return Image.radial_gradient("L").resize((160, 160)).point([int(110 * (1 - v / 255) ** 2) for v in range(256)])


@cache
def cylinder_tile() -> Image.Image:
    """Brightness across a bottle or can: a highlight left of centre, dark towards the edges."""
    x = np.linspace(-1, 1, TILE)
    shade = 0.35 + 0.65 * np.sqrt(np.clip(1 - x ** 2, 0, 1)) + 0.35 * np.exp(-((x + 0.35) / 0.12) ** 2)
    return Image.fromarray((255 * np.clip(shade, 0, 1)[None, :].repeat(8, 0)).astype(np.uint8))
