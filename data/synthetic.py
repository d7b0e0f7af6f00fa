"""Synthetic ABID bins: the project's offline default dataset, laid out like the public bucket ``s3://aft-vbi-pds``.

    python -m data.synthetic --output DIR --num_images N --seed S [--min_count 0] [--max_count 5] [--num_proc 1]
                             [--overwrite]

writes ``DIR/bin-images/<id>.jpg`` and ``DIR/metadata/<id>.json`` (the real ABID schema) for ids ``00001``, ``00002``…,
and ``DIR/synthetic.json``: the settings that made them, which also tells ``data.build`` the bins are synthetic.
Each image is a front view of a fabric pod: items of varied shape, colour, size and rotation (units of one ASIN share
their look), overlapping, partly hidden behind the elastic straps and the pod's front lip, under varied light and noise.
Counts follow ABID's class balance (see ``ABID_COUNT_SHARE``), so a small CNN learns them yet cannot count every bin.

Image ``i`` depends only on ``(seed, i)``: the output is the same whatever ``num_proc`` is and however often a run was
interrupted. Files are written atomically; a re-run skips ids whose jpg and json both exist (and refuses a folder made
with other settings); ``--overwrite`` redoes them.

API:
- ``bin_id(index)``: the id of image ``index`` (0-based), zero-padded like ABID: ``bin_id(0) == "00001"``.
- ``count_weights(min_count, max_count)``: the probability of each count ``min_count..max_count``.
- ``sample_products(rng, count)``: the ASINs of a bin, with their quantities, metadata fields and looks.
- ``make_metadata(products)``: the ``metadata/<id>.json`` document.
- ``sample_size(rng)``: an image size drawn like ABID's (mostly landscape, median about 470x350).
- ``render_bin(rng, products, size=None)``: the bin image (``size`` from ``sample_size`` when None).
- ``make_bin(seed, index, min_count, max_count)``: image ``index`` of a dataset, as ``(image, metadata)``, in memory.
- ``generate(output, num_images, seed, min_count, max_count, num_proc, overwrite)``: write a dataset; returns how many
  bins it wrote.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import random
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw
from tqdm import tqdm

# Share of each count 0..5 in abid_challenge's "moderate" validation list (36,032 bins,
# ../shared/abid-sample/lists/abid_challenge_counting_val.json): 966, 4098, 7622, 8951, 8054, 6341 bins.
ABID_COUNT_SHARE = (0.0268, 0.1137, 0.2115, 0.2484, 0.2235, 0.1760)
# Above 5 each count is this much rarer than the one before it (ABID's 4 -> 5 ratio is about 0.79).
TAIL_DECAY = 0.7
MAX_COUNT = 100
# How readily another unit of an ASIN already in the bin is added rather than a new ASIN (Chinese restaurant process):
# lower means fewer ASINs with more units each; 2 gives ABID's typical 2-3 ASINs in a bin of 4-5 items.
NEW_ASIN_WEIGHT = 2.0
JPEG_QUALITY = 85
MAX_SIDE = 1100
# The brightest the light gets (of 255), leaving headroom for sensor noise; exposure brings the level back.
LIGHT_PEAK = 220
MARKER = "synthetic.json"

Point = tuple[float, float]
RGBA = tuple[int, int, int, int]

# (product, shape, (length, width, height) in inches): a small vocabulary of things a fulfilment centre stows.
PRODUCTS = (
    ("Spin-On Oil Filter", "can", (3.9, 2.9, 2.8)),
    ("Braided USB-C Cable, 6.6 Ft", "bag", (7.0, 4.0, 1.0)),
    ("Natural Toothpaste, 4.7 Ounce", "box", (7.5, 1.8, 1.6)),
    ("LED Light Bulb, Warm White", "box", (5.0, 4.0, 4.0)),
    ("Stainless Steel Water Bottle, 24 Oz", "bottle", (10.0, 3.0, 3.0)),
    ("Slim Phone Case", "flat", (6.5, 3.5, 0.6)),
    ("Spiral Notebook, College Ruled", "flat", (10.5, 8.0, 0.5)),
    ("Ceramic Coffee Mug, 11-Ounce", "box", (5.0, 4.5, 4.5)),
    ("Vitamin D3 Softgels, 120 Count", "bottle", (4.5, 2.4, 2.4)),
    ("Scented Soy Candle", "can", (4.0, 3.2, 3.2)),
    ("Cotton Crew Socks", "bag", (9.0, 6.0, 1.5)),
    ("Kids' Graphic T-Shirt", "bag", (11.0, 9.0, 1.0)),
    ("Wireless Optical Mouse", "blister", (7.0, 4.5, 2.0)),
    ("Family Board Game", "box", (10.5, 10.5, 2.5)),
    ("Permanent Markers, 12-Count", "blister", (8.0, 5.0, 0.8)),
    ("SDHC Memory Card 32GB", "blister", (5.5, 4.0, 0.4)),
    ("Tempered Glass Screen Protector", "flat", (7.0, 4.0, 0.4)),
    ("Detangling Hair Brush", "blister", (9.5, 3.0, 1.8)),
    ("Sport Sunscreen Lotion, SPF 50", "bottle", (7.0, 2.5, 1.8)),
    ("Paperback Cookbook", "flat", (8.0, 5.3, 0.9)),
    ("Squeaky Dog Chew Toy", "bag", (6.0, 4.0, 2.0)),
    ("Jigsaw Puzzle, 1000 Pieces", "box", (10.0, 7.0, 2.2)),
    ("Digital Sport Watch", "box", (4.0, 3.0, 2.5)),
    ("Kinesiology Tape Roll", "can", (4.0, 4.0, 2.5)),
    ("Elastic Hair Ties, 30 Pack", "blister", (6.0, 3.0, 0.5)),
    ("Car Air Freshener", "blister", (6.5, 3.5, 0.6)),
    ("Cooling Fan 80mm", "box", (3.5, 3.5, 1.2)),
    ("Microfiber Cleaning Cloths", "bag", (8.0, 6.0, 2.0)),
)
BRANDS = ("Acme", "Brightline", "Northwind", "Kestrel", "Solano", "Pinecrest", "Vantor", "Luma", "Orbix", "Tidewell",
          "Maple Row", "Zentra", "Copperleaf", "Quillon", "Redstone", "Harbor & Finch")
COLOURS = {
    "Black": (38, 38, 42), "White": (232, 230, 224), "Red": (178, 42, 40), "Blue": (42, 86, 168),
    "Navy": (30, 42, 88), "Green": (48, 128, 72), "Yellow": (228, 192, 52), "Orange": (222, 122, 42),
    "Pink": (226, 132, 170), "Grey": (128, 130, 134), "Purple": (112, 64, 150), "Teal": (30, 140, 140),
}
KRAFT = (168, 128, 88)
TAG_COLOURS = ((40, 52, 110), (110, 70, 50), (196, 84, 70), (96, 98, 104), (214, 120, 50))
ASIN_CHARS = string.ascii_uppercase + string.digits
# Unit circle as 16 points: ellipses become polygons, so every layer rotates the same way.
_CIRCLE = tuple((math.cos(2 * math.pi * k / 16), math.sin(2 * math.pi * k / 16)) for k in range(16))


@dataclass(frozen=True)
class Look:
    """How every unit of one ASIN is drawn: polygons in unit coordinates (-0.5..0.5), the first is the silhouette."""

    layers: tuple[tuple[tuple[Point, ...], RGBA, RGBA | None], ...]
    angle: float  # resting orientation in radians; each unit adds its own jitter of up to `wobble`
    wobble: float
    stack: float  # chance that a unit sits beside or on top of the previous unit of its ASIN


@dataclass(frozen=True)
class Product:
    """One ASIN in a bin: what its metadata says, and the look its units share in the image."""

    asin: str
    name: str
    normalized_name: str
    quantity: int
    size_in: tuple[float, float, float]  # length, width, height
    weight_lb: float
    face_in: tuple[float, float]  # the width and height it shows the camera
    look: Look


def bin_id(index: int) -> str:
    return "%05d" % (index + 1)


def count_weights(min_count: int, max_count: int) -> list[float]:
    """Probabilities of counts ``min_count..max_count``: ABID's shares up to 5, a geometric tail above."""
    raw = [ABID_COUNT_SHARE[k] if k <= 5 else ABID_COUNT_SHARE[5] * TAIL_DECAY ** (k - 5)
           for k in range(min_count, max_count + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def sample_products(rng: random.Random, count: int) -> list[Product]:
    """Split ``count`` units into ASINs (several units of one ASIN are common) and give each a product and a look."""
    quantities: list[int] = []
    for _ in range(count):
        k = rng.choices(range(len(quantities) + 1), weights=quantities + [NEW_ASIN_WEIGHT])[0]
        if k == len(quantities):
            quantities.append(1)
        else:
            quantities[k] += 1
    asins: set[str] = set()
    while len(asins) < len(quantities):
        asins.add("B0" + "".join(rng.choices(ASIN_CHARS, k=8)))
    return [_product(rng, asin, quantity) for asin, quantity in zip(sorted(asins), quantities)]


def _product(rng: random.Random, asin: str, quantity: int) -> Product:
    noun, shape, (length, width, height) = rng.choice(PRODUCTS)
    size = tuple(round(d * rng.uniform(0.8, 1.25), 2) for d in (length, width, height))
    colour_name = rng.choice(tuple(COLOURS))
    colour = KRAFT if shape == "box" and rng.random() < 0.3 else COLOURS[colour_name]
    name = f"{rng.choice(BRANDS)} {noun}" + (f", {colour_name}" if colour != KRAFT and rng.random() < 0.5 else "")
    normalized = name
    if rng.random() < 0.2:  # real ABID names carry pack sizes that normalizedName moves to the front
        pack = rng.choice(("(Pack of {})", "{} Pack")).format(rng.choice((2, 3, 4, 6, 12)))
        name, normalized = f"{name} {pack}", f"{pack} {name}"
    weight = round(size[0] * size[1] * size[2] * rng.uniform(0.008, 0.04) + 0.05, 2)
    face = (size[0], size[1]) if shape == "flat" else (size[0], max(size[1], size[2]))
    return Product(asin, name, normalized, quantity, size, weight, face, _look(rng, shape, colour))


def make_metadata(products: list[Product]) -> dict:
    """The bin's metadata document in ABID's schema; ``EXPECTED_QUANTITY`` is the sum of the quantities."""
    def inches(value: float) -> dict:
        return {"unit": "IN", "value": value}

    items = {p.asin: {"asin": p.asin, "name": p.name, "normalizedName": p.normalized_name, "quantity": p.quantity,
                      "length": inches(p.size_in[0]), "width": inches(p.size_in[1]), "height": inches(p.size_in[2]),
                      "weight": {"unit": "pounds", "value": p.weight_lb}}
             for p in products}
    return {"BIN_FCSKU_DATA": items, "EXPECTED_QUANTITY": sum(p.quantity for p in products)}


# Looks
def _rect(x0: float, y0: float, x1: float, y1: float) -> tuple[Point, ...]:
    return (x0, y0), (x1, y0), (x1, y1), (x0, y1)


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> tuple[Point, ...]:
    return tuple((cx + rx * x, cy + ry * y) for x, y in _CIRCLE)


def _shade(colour: tuple[int, ...], factor: float, alpha: int = 255) -> RGBA:
    return tuple(min(255, int(c * factor)) for c in colour[:3]) + (alpha,)


def _text_colour(colour: tuple[int, ...]) -> RGBA:
    return (25, 25, 28, 255) if sum(colour[:3]) > 400 else (235, 235, 230, 255)


def _look(rng: random.Random, shape: str, colour: tuple[int, int, int]) -> Look:
    """Layers for one of the shapes: box, can, bottle, bag, flat (book, case) or blister card."""
    accent = rng.choice(tuple(COLOURS.values()))
    edge = _shade(colour, 0.6)
    u = rng.uniform
    bars = tuple((_rect(-0.35, y, -0.35 + u(0.3, 0.7), y + u(0.03, 0.07)), _text_colour(accent), None)
                 for y in (u(-0.3, -0.1), u(0.0, 0.2))[:rng.randint(1, 2)])
    upright, wobble, stack = 0.0, 0.12, 0.5
    if shape == "box":
        x0, y0 = u(-0.45, -0.1), u(-0.45, 0.1)
        layers = ((_rect(-0.5, -0.5, 0.5, 0.5), _shade(colour, 1), edge),
                  (_rect(0.36, -0.5, 0.5, 0.5), _shade(colour, 0.75), None),
                  (_rect(x0, y0, x0 + u(0.3, 0.55), y0 + u(0.15, 0.4)), _shade(accent, 1), None)) + bars
        upright = rng.choice((0.0, 0.0, math.pi / 2))
    elif shape == "can":
        top, bottom = _ellipse(0, -0.4, 0.5, 0.1), _ellipse(0, 0.4, 0.5, 0.1)
        silhouette = top[8:] + top[:1] + bottom[:9]
        layers = ((silhouette, _shade(colour, 1), edge), (top, _shade(colour, 1.3), edge),
                  (_rect(-0.5, -0.12, 0.5, 0.22), _shade(accent, 1), None))
        upright = rng.choice((0.0, 0.0, math.pi / 2))
    elif shape == "bottle":
        silhouette = ((-0.18, -0.5), (0.18, -0.5), (0.18, -0.34), (0.5, -0.14), (0.5, 0.5), (-0.5, 0.5),
                      (-0.5, -0.14), (-0.18, -0.34))
        layers = ((silhouette, _shade(colour, 1), edge), (_rect(-0.2, -0.5, 0.2, -0.34), _shade(accent, 0.8), None),
                  (_rect(-0.5, 0.0, 0.5, 0.36), _shade(accent, 1), None),
                  (_rect(-0.36, -0.08, -0.26, 0.44), (255, 255, 255, 60), None))
        upright = rng.choice((0.0, 0.0, math.pi / 2))
    elif shape == "bag":
        outline = tuple((0.5 * x * u(0.82, 1.0), 0.5 * y * u(0.82, 1.0)) for x, y in _CIRCLE)
        layers = ((outline, _shade(colour, 1, rng.randint(190, 245)), _shade(colour, 1.4)),
                  (_ellipse(u(-0.15, 0.15), u(-0.1, 0.15), u(0.12, 0.25), u(0.1, 0.2)), _shade(accent, 1), None),
                  (((-0.3, -0.3), (-0.1, -0.38), (0.25, 0.2), (0.1, 0.3)), (255, 255, 255, 70), None))
        if rng.random() < 0.5:
            layers += ((_rect(-0.4, -0.46, 0.4, -0.34), _shade(accent, 0.9), None),)
        upright, wobble, stack = u(-0.5, 0.5), 0.5, 0.35
    elif shape == "flat":
        layers = ((_rect(-0.5, -0.5, 0.5, 0.5), _shade(accent, 1), _shade(accent, 0.6)),
                  (_rect(-0.42, -0.42, 0.42, u(0.0, 0.42)), _shade(colour, 1), None)) + bars
        upright, wobble, stack = rng.choice((0.0, math.pi / 2)) + u(-0.3, 0.3), 0.25, 0.6
    else:  # blister card: a printed backing card with the product in a clear bubble
        layers = ((_rect(-0.5, -0.5, 0.5, 0.5), _shade(accent, 1), _shade(accent, 0.6)),
                  (_ellipse(0, 0.08, 0.32, 0.3), _shade(colour, 1, 235), (245, 245, 245, 160)),
                  (_ellipse(-0.1, -0.02, 0.1, 0.08), (255, 255, 255, 80), None)) + bars[:1]
        wobble = 0.3
    return Look(layers, upright, wobble, stack)


# Rendering
def sample_size(rng: random.Random) -> tuple[int, int]:
    """An image size like ABID's: mostly landscape around 470x350, some square or portrait, 300-1100 px a side."""
    kind = rng.random()
    if kind < 0.68:
        width, aspect = 460 * rng.lognormvariate(0, 0.15), rng.uniform(0.6, 0.76)
    elif kind < 0.84:
        width, aspect = 560 * rng.lognormvariate(0, 0.12), rng.uniform(0.9, 1.05)
    else:
        width, aspect = 400 * rng.lognormvariate(0, 0.2), rng.uniform(1.45, 1.6)
    return min(MAX_SIDE, max(300, round(width))), min(MAX_SIDE, max(300, round(width * aspect)))


@cache
def _noise_tile(sd: int) -> Image.Image:
    """A fixed tile of Gaussian sensor noise around 128; each image crops its own window, so none draws its own."""
    noise = np.random.default_rng(sd).normal(128, sd, (MAX_SIDE, MAX_SIDE))
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))


@cache
def _light_tile() -> Image.Image:
    """Light falling off from the centre of a tile twice the largest image, peaking at LIGHT_PEAK: a window of it is a
    vignette or a gradient, depending on where the window sits, without resizing anything per image."""
    distance = Image.radial_gradient("L").resize((2 * MAX_SIDE, 2 * MAX_SIDE), Image.Resampling.BILINEAR)
    return distance.point([LIGHT_PEAK * (1 - 0.8 * v / 255) for v in range(256)])


def _exposure(rng: random.Random) -> Callable[[tuple[int, ...]], RGBA]:
    """Gain, gamma and a warm colour cast, applied to every colour drawn (cheaper than a pass over the pixels)."""
    gain, gamma = 255 / LIGHT_PEAK * rng.uniform(0.9, 1.3), rng.uniform(0.85, 1.15)
    cast = (rng.uniform(0.97, 1.08), rng.uniform(0.95, 1.05), rng.uniform(0.8, 0.98))
    curves = [[min(255, int(255 * gain * c * (v / 255) ** gamma)) for v in range(256)] for c in cast]

    def ink(colour: tuple[int, ...]) -> RGBA:
        return curves[0][colour[0]], curves[1][colour[1]], curves[2][colour[2]], colour[3] if len(colour) > 3 else 255

    return ink


def render_bin(rng: random.Random, products: list[Product], size: tuple[int, int] | None = None) -> Image.Image:
    """Draw the pod, the items (back to front), the straps and the pod's front frame, under uneven light with noise."""
    width, height = size or sample_size(rng)
    u = rng.uniform
    ink = _exposure(rng)
    fabric = (int(u(195, 225)), int(u(185, 210)), int(u(120, 160)))
    top, bottom = height * u(0.06, 0.16), height * u(0.8, 0.9)
    left, right = width * u(0.0, 0.05), width * (1 - u(0.0, 0.05))
    inset, depth = width * u(0.03, 0.08), height * u(0.03, 0.07)

    # The pod inside: side walls, back wall and floor
    image = Image.new("RGB", (width, height), ink(_shade(fabric, u(0.7, 0.85)))[:3])
    draw = ImageDraw.Draw(image, "RGBA")
    draw.rectangle((left + inset, top, right - inset, bottom - depth), fill=ink(_shade(fabric, u(0.55, 0.8))))
    draw.polygon(((left + inset, bottom - depth), (right - inset, bottom - depth), (right, bottom), (left, bottom)),
                 fill=ink(_shade(fabric, u(0.8, 0.95))))

    # Items, back to front
    inner_w, inner_h = right - left, bottom - top
    ppi = inner_w / u(16, 26)
    shadow = 0.15 * ppi
    crowding = 1 / math.sqrt(1 + 0.08 * max(0, sum(p.quantity for p in products) - 3))
    units = [p for p in products for _ in range(p.quantity)]
    rng.shuffle(units)
    previous: dict[str, Point] = {}
    for product in units:
        look = product.look
        w, h = (d * ppi * crowding for d in product.face_in)
        fit = min(1.0, 0.6 * inner_w / w, 0.7 * inner_h / h)
        w, h = w * fit, h * fit
        angle = look.angle + u(-look.wobble, look.wobble)
        c, s = math.cos(angle), math.sin(angle)
        half_x, half_y = (abs(w * c) + abs(h * s)) / 2, (abs(w * s) + abs(h * c)) / 2
        if product.asin in previous and rng.random() < look.stack:
            px, py = previous[product.asin]
            if rng.random() < 0.6:  # side by side
                x, y = px + rng.choice((-1, 1)) * half_x * u(0.9, 2.0), py + half_y * u(-0.3, 0.2)
            else:  # stacked on top
                x, y = px + half_x * u(-0.4, 0.4), py - half_y * u(0.9, 1.8)
        elif rng.random() < 0.65:  # resting on the floor
            x, y = u(left, right), bottom - half_y * u(0.7, 1.1)
        else:
            x, y = u(left, right), u(top + half_y, bottom)
        x = min(max(x, left + half_x * 0.6), right - half_x * 0.6)
        y = min(max(y, top + half_y * 0.6), bottom + half_y * 0.3)
        previous[product.asin] = (x, y)
        light = u(0.85, 1.1)
        for k, (points, fill, outline) in enumerate(look.layers):
            placed = [(x + px * w * c - py * h * s, y + px * w * s + py * h * c) for px, py in points]
            if k == 0:
                draw.polygon([(a + shadow, b + shadow) for a, b in placed], fill=(0, 0, 0, 70))
            draw.polygon(placed, fill=ink(_shade(fill, light, fill[3])), outline=outline and ink(outline))

    # Elastic straps: bands of thin translucent strings across the front, sagging a little
    bands = rng.choice((1, 2, 2, 2, 3))
    for band in range(bands):
        band_h = inner_h * u(0.12, 0.22)
        band_top = top + inner_h * (band + u(0.15, 0.85)) / bands - band_h / 2
        spacing = max(2.0, height / 350 * u(1.8, 2.8))
        tilt, sag = u(-0.02, 0.02) * height, u(0, 0.015) * height
        strand = ink((int(u(205, 245)),) * 3 + (int(u(140, 220)),))
        for k in range(int(band_h / spacing)):
            y = band_top + k * spacing
            draw.line(((0, y - tilt), (width / 2, y + sag), (width, y + tilt)), fill=strand, width=1)
        hook = ink((235, 235, 230, 120))
        draw.rectangle((left, band_top, left + width * 0.015, band_top + band_h), fill=hook)
        draw.rectangle((right - width * 0.015, band_top, right, band_top + band_h), fill=hook)

    # The pod's frame in front: top band, front lip and side posts, with bin labels
    front = ink(fabric)
    draw.rectangle((0, 0, width, top), fill=front)
    draw.rectangle((0, bottom, width, height), fill=front)
    draw.rectangle((0, 0, left, height), fill=front)
    draw.rectangle((right, 0, width, height), fill=front)
    draw.line(((0, bottom), (width, bottom)), fill=ink(_shade(fabric, 0.6)), width=max(1, height // 150))
    _label(draw, rng, ink, width * u(0.3, 0.55), top * u(0.2, 0.6), height)
    _label(draw, rng, ink, width * u(0.3, 0.55), bottom + (height - bottom) * u(0.3, 0.6), height)

    # Uneven light with sensor noise in it, as one multiplicative mask
    x, y = rng.randrange(MAX_SIDE - width, MAX_SIDE + 1), rng.randrange(MAX_SIDE - height, MAX_SIDE + 1)
    light = _light_tile().crop((x, y, x + width, y + height))
    x, y = rng.randrange(MAX_SIDE - width + 1), rng.randrange(MAX_SIDE - height + 1)
    noise = _noise_tile(rng.choice((2, 4, 6, 9))).crop((x, y, x + width, y + height))
    return Image.composite(image, Image.new("RGB", image.size), ImageChops.add(light, noise, 1.0, -128))


def _label(draw: ImageDraw.ImageDraw, rng: random.Random, ink: Callable[[tuple[int, ...]], RGBA], x: float, y: float,
           height: int) -> None:
    """A bin label like "1F↑ [QR]": a coloured tag with a white text box and a white code square."""
    s = height / 350 * rng.uniform(0.9, 1.2)
    paper, printed = ink((240, 240, 236)), ink((20, 20, 24))
    draw.rectangle((x, y - 9 * s, x + 70 * s, y + 9 * s), fill=ink(rng.choice(TAG_COLOURS)))
    draw.rectangle((x + 6 * s, y - 7 * s, x + 36 * s, y + 7 * s), fill=paper)
    for k in range(3):
        draw.rectangle((x + (9 + 9 * k) * s, y - 5 * s, x + (15 + 9 * k) * s, y + 5 * s), fill=printed)
    draw.rectangle((x + 44 * s, y - 7 * s, x + 58 * s, y + 7 * s), fill=paper)
    for k in range(9):
        if rng.random() < 0.5:
            cx, cy = x + (45 + 4 * (k % 3)) * s, y + (-6 + 4 * (k // 3)) * s
            draw.rectangle((cx, cy, cx + 4 * s, cy + 4 * s), fill=printed)


# Datasets
def make_bin(seed: int, index: int, min_count: int = 0, max_count: int = 5) -> tuple[Image.Image, dict]:
    """Image ``index`` of the dataset for ``seed``, with its metadata; nothing else influences it."""
    rng = random.Random(f"abid-synthetic:{seed}:{index}")
    count = rng.choices(range(min_count, max_count + 1), weights=count_weights(min_count, max_count))[0]
    products = sample_products(rng, count)
    return render_bin(rng, products), make_metadata(products)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a hidden temp file and rename, so a reader or a resumed run never sees half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def _write_bin(output: Path, seed: int, min_count: int, max_count: int, index: int) -> None:
    image, metadata = make_bin(seed, index, min_count, max_count)
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=JPEG_QUALITY)
    name = bin_id(index)
    _write_atomic(output / "bin-images" / f"{name}.jpg", jpeg.getvalue())
    _write_atomic(output / "metadata" / f"{name}.json", json.dumps(metadata, indent=4, sort_keys=True).encode())


def _claim(output: Path, settings: dict, overwrite: bool) -> None:
    """Record the settings in ``synthetic.json``; refuse to add bins to a folder made with other ones."""
    marker = output / MARKER
    previous = json.loads(marker.read_text()) if marker.is_file() else None
    if previous == settings:
        return
    if previous is not None and not overwrite:
        raise ValueError(f"{output} holds bins made with {previous}, not {settings}; "
                         "choose another folder or pass --overwrite")
    _write_atomic(marker, json.dumps(settings, indent=4).encode())


def _stems(folder: Path, suffix: str) -> set[str]:
    return {entry.name[:-len(suffix)] for entry in os.scandir(folder) if entry.name.endswith(suffix)}


def generate(output: Path, num_images: int, seed: int, min_count: int = 0, max_count: int = 5, num_proc: int = 1,
             overwrite: bool = False) -> int:
    """Write bins ``0..num_images-1`` under ``output``, skipping complete ones unless ``overwrite``; returns how many
    it wrote."""
    if not 0 <= min_count <= max_count <= MAX_COUNT:
        raise ValueError(f"counts must satisfy 0 <= min_count <= max_count <= {MAX_COUNT}, "
                         f"got {min_count}..{max_count}")
    if num_images < 0 or num_proc < 1:
        raise ValueError(f"num_images must be >= 0 and num_proc >= 1, got {num_images} and {num_proc}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    _claim(output, {"generator": "data.synthetic", "seed": seed, "min_count": min_count, "max_count": max_count},
           overwrite)
    (output / "bin-images").mkdir(exist_ok=True)
    (output / "metadata").mkdir(exist_ok=True)
    done = set() if overwrite else _stems(output / "bin-images", ".jpg") & _stems(output / "metadata", ".json")
    todo = [i for i in range(num_images) if bin_id(i) not in done]
    write = partial(_write_bin, output, seed, min_count, max_count)
    with tqdm(total=num_images, initial=num_images - len(todo), unit="img", desc="synthetic bins") as progress:
        if num_proc == 1:
            for index in todo:
                write(index)
                progress.update()
        else:
            with multiprocessing.Pool(num_proc) as pool:
                for _ in pool.imap_unordered(write, todo, chunksize=16):
                    progress.update()
    return len(todo)


@dataclass
class SyntheticArguments:
    output: str = field(metadata={"help": "Folder to write bin-images/<id>.jpg and metadata/<id>.json into."})
    num_images: int = field(metadata={"help": "How many bins to write (ids 00001..N)."})
    seed: int = field(metadata={"help": "Seed: image i depends only on (seed, i)."})
    min_count: int = field(default=0, metadata={"help": "Fewest items in a bin."})
    max_count: int = field(default=5, metadata={"help": f"Most items in a bin (at most {MAX_COUNT}); counts above 5 "
                                                        "get rarer geometrically."})
    num_proc: int = field(default=1, metadata={"help": "Worker processes; the output does not depend on it."})
    overwrite: bool = field(default=False, metadata={"help": "Regenerate bins whose files already exist."})


def main() -> None:
    from transformers import HfArgumentParser  # slow to import; only the command line needs it

    (args,) = HfArgumentParser(SyntheticArguments).parse_args_into_dataclasses()
    try:
        written = generate(Path(args.output), args.num_images, args.seed, args.min_count, args.max_count,
                           args.num_proc, args.overwrite)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {written} of {args.num_images} bins to {args.output}")


if __name__ == "__main__":
    main()
