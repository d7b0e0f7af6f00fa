"""Drawing synthetic ABID bins: a close, slightly blurred front view of a yellow fabric pod crossed by tight elastic
strap bands, the neighbouring pods' edges and tag cards in view, and printed, wrapped and soft items that fill it.

Why it is built this way: the generator must write 200+ bins a second on one core, so everything costly is drawn once
per process from fixed seeds (print, photo, crumple, strap, tag and light tiles, ``data.synthetic_tiles``) and each bin
only crops, tints and pastes them. The pod and its items are drawn at about 40% of the output size and upscaled (with
OpenCV, whose resize is several times faster than Pillow's), which is the camera's defocus for free; the thin strap
strands and the tag cards are pasted at full size afterwards. The proportions, colours, band spacing and JPEG
settings come from measurements on real ABID bins (``python -m data.realism``).

API: ``sample_look(rng, shape)`` (how every unit of one ASIN looks), ``sample_size(rng)``,
``render_bin(rng, products, size)`` (each product: ``asin``, ``quantity``, ``face_in`` in inches, ``look``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageDraw

from data.synthetic_tiles import (MAX_SIDE, TILE, crumple_tiles, cylinder_tile, glare_tile, light_tile, noise_tile,
                                  photo_tiles, print_tiles, strap_tiles, tag_tiles)

# ABID's pod fabric before the camera's warm cast (measured on the lips of real bins: about (187, 157, 109) after).
FABRIC = (184, 172, 138)
# Item colours: muted, with many dark wraps and kraft boxes, as in a fulfilment centre.
PALETTE = ((30, 30, 34), (48, 46, 50), (70, 68, 72), (120, 118, 112), (200, 198, 190), (232, 230, 222),
           (236, 236, 232), (244, 242, 238), (225, 225, 222),
           (168, 128, 88), (150, 112, 78), (150, 40, 40), (40, 70, 140), (30, 40, 80), (50, 110, 70),
           (210, 170, 60), (200, 110, 50), (200, 120, 150), (100, 60, 130), (30, 120, 120), (90, 70, 50))
SHAPES = ("box", "book", "bag", "clear", "bottle", "soft", "flat", "blister", "can")
# Strand spacing in pixels at a 400-px-tall image, and how it grows with the height: measured on real bins' row-profile
# spectra (about 6 px apart at 260-300 px tall, 6.3 px at 634 px: nearly constant in pixels).
STRAP_PITCH = (5.0, 7.0)
STRAP_GROWTH = 0.3


@dataclass(frozen=True)
class Look:
    """How every unit of one ASIN is drawn."""

    shape: str
    base: tuple[int, int, int]
    ink: tuple[int, int, int]
    pattern: int  # index into the print tiles
    photo: int  # index into the photo tiles, or -1
    angle: float  # resting orientation in radians; each unit adds its own jitter of up to `wobble`
    wobble: float
    stack: float  # chance that a unit sits beside or on top of the previous unit of its ASIN


def _mute(colour: tuple[int, int, int], keep: float) -> tuple[int, int, int]:
    """Keep ``keep`` of a colour's difference from its grey: under the pod's light, packaging looks washed out."""
    grey = sum(colour) / 3
    return tuple(int(grey + keep * (c - grey)) for c in colour)


def sample_look(rng: random.Random, shape: str) -> Look:
    """A look for ``shape``; dark wraps, kraft boxes and printed cards are the common cases."""
    keep = rng.uniform(0.1, 0.35)
    base = _mute(rng.choice(PALETTE), keep)
    ink = (20, 20, 24) if sum(base) > 360 else _mute(rng.choice(((236, 234, 228), (220, 190, 60), (200, 60, 50))), keep)
    if shape == "box" and rng.random() < 0.3:
        base, ink = (168, 128, 88), (40, 36, 34)
    if shape == "clear":
        base = rng.choice(((214, 214, 210), (190, 196, 200), (150, 150, 150)))
    printed = shape in ("box", "book", "flat", "blister")
    photo = rng.randrange(len(photo_tiles())) if printed and rng.random() < 0.5 else -1
    upright = rng.choice((0.0, 0.0, 0.0, math.pi / 2))
    wobble, stack = {"bag": (0.5, 0.35), "clear": (0.5, 0.35), "soft": (0.6, 0.3)}.get(shape, (0.12, 0.55))
    return Look(shape, base, ink, rng.randrange(len(print_tiles())), photo, upright, wobble, stack)


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


# Rendering
GLARE = [max(0, min(255, (v - 235) * 8)) for v in range(256)]  # light above the usual peak washes out to white


def _camera(canvas: Image.Image, rng: random.Random) -> np.ndarray:
    """ABID's camera: a warm cast (every real pixel's hue lies within 15-40 degrees), gain, gamma and a black level,
    as one lookup table per channel; returns an array, which the defocus works on."""
    gain, gamma, lift = rng.uniform(0.85, 1.15), rng.uniform(0.9, 1.35), rng.uniform(4, 18)
    cast = np.array([1.0, rng.uniform(0.85, 0.91), rng.uniform(0.7, 0.8)])[:, None]
    curve = lift + (255 - lift) * np.minimum(1.0, gain * cast * np.arange(256) / 255) ** gamma
    table = np.minimum(curve, 255).astype(np.uint8)  # (channel, value)
    return cv2.LUT(np.asarray(canvas), np.ascontiguousarray(table.T[:, None, :]))


def _defocus(array: np.ndarray, rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """The camera's blur: the small render upscaled to ``size`` is the defocus; squeezing one axis first (sometimes)
    adds motion blur, which the upscale stretches back."""
    h, w = array.shape[:2]
    if rng.random() < 0.35:
        squeeze = rng.uniform(0.55, 0.85)
        squeezed = (max(4, int(w * squeeze)), h) if rng.random() < 0.7 else (w, max(4, int(h * squeeze)))
        array = cv2.resize(array, squeezed, interpolation=cv2.INTER_AREA)
    return Image.fromarray(cv2.resize(array, size, interpolation=cv2.INTER_LINEAR))


def _blob(rng: random.Random, w: int, h: int) -> Image.Image:
    mask = Image.new("L", (w, h), 0)
    points = [(w / 2 + w / 2 * math.cos(a) * rng.uniform(0.8, 1.0), h / 2 + h / 2 * math.sin(a) * rng.uniform(0.8, 1.0))
              for a in np.linspace(0, 2 * math.pi, 12, endpoint=False)]
    ImageDraw.Draw(mask).polygon(points, fill=255)
    return mask


def _item(rng: random.Random, look, w: int, h: int) -> tuple[Image.Image, Image.Image | None]:
    """One unit's face and mask (None: the whole rectangle), upright, at render scale."""
    face, mask, shape = Image.new("RGB", (w, h), look.base), None, look.shape
    draw = ImageDraw.Draw(face)
    if shape in ("box", "book", "flat", "blister", "can", "bottle"):
        face.paste(look.ink, (0, 0), print_tiles()[look.pattern].resize((w, h), Image.Resampling.BILINEAR))
        if look.photo >= 0 and w > 8 and h > 8:
            pw, ph = int(w * rng.uniform(0.35, 0.7)), int(h * rng.uniform(0.3, 0.6))
            face.paste(photo_tiles()[look.photo].resize((pw, ph)), (int((w - pw) * 0.5), int((h - ph) * 0.3)))
    if shape == "box":
        side = int(w * rng.uniform(0.08, 0.2))
        draw.rectangle((w - side, 0, w, h), fill=tuple(c * 2 // 3 for c in look.base))
        draw.rectangle((0, 0, w - 1, h - 1), outline=tuple(c // 2 for c in look.base))
    elif shape == "book":
        draw.rectangle((0, 0, max(2, w // 10), h), fill=tuple(c // 2 for c in look.base))
        draw.rectangle((0, h - max(2, h // 14), w, h), fill=(226, 220, 200))
    elif shape in ("bottle", "can"):
        face = Image.composite(face, Image.new("RGB", (w, h)), cylinder_tile().resize((w, h)))
        if shape == "bottle":
            mask = Image.new("L", (w, h), 0)
            neck = w * rng.uniform(0.2, 0.35)
            ImageDraw.Draw(mask).polygon(((w / 2 - neck, 0), (w / 2 + neck, 0), (w / 2 + neck, h * 0.15), (w, h * 0.3),
                                          (w, h), (0, h), (0, h * 0.3), (w / 2 - neck, h * 0.15)), fill=255)
    elif shape in ("bag", "clear", "soft"):
        crumple = crumple_tiles()[{"bag": 0, "clear": 1, "soft": 2}[shape]]
        x, y = rng.randrange(TILE // 2), rng.randrange(TILE // 2)
        light = crumple.crop((x, y, x + TILE // 2, y + TILE // 2)).resize((w, h), Image.Resampling.BILINEAR)
        mask = _blob(rng, w, h)
        if shape == "soft":
            face = Image.composite(face, Image.new("RGB", (w, h)), light)
        else:
            face.paste((250, 250, 246), (0, 0), light)  # glints on the plastic's ridges
            if look.photo < 0 and rng.random() < 0.6:  # a printed label on the wrap
                lw, lh = max(2, w // 3), max(2, h // 4)
                face.paste((236, 236, 230), (w // 3, h // 3, w // 3 + lw, h // 3 + lh))
        if shape == "clear":
            # see-through: about half covered, fully where the plastic glints
            haze = Image.new("L", (w, h), int(rng.uniform(110, 170)))
            mask = ImageChops.multiply(mask, ImageChops.lighter(light, haze))
    elif shape == "blister":
        mask = None
        draw.ellipse((w * 0.2, h * 0.25, w * 0.8, h * 0.85), fill=tuple(min(255, c + 50) for c in look.ink),
                     outline=(245, 245, 240))
    return face, mask


def _place(canvas: Image.Image, rng: random.Random, look, face: Image.Image, mask: Image.Image | None,
           x: float, y: float, shadow: int) -> None:
    """Rotate a unit by its look's angle plus jitter and paste it centred on (x, y), with a soft shadow."""
    angle = look.angle + rng.uniform(-look.wobble, look.wobble)
    if round(angle / (math.pi / 2)) % 2:  # lying on its side: a quarter turn is a cheap transpose
        face = face.transpose(Image.Transpose.ROTATE_90)
        mask = mask and mask.transpose(Image.Transpose.ROTATE_90)
    tilt = math.degrees(angle - round(angle / (math.pi / 2)) * math.pi / 2)
    if abs(tilt) > 4 and look.shape not in ("bag", "clear", "soft"):  # blobs look the same turned
        if mask is None:
            mask = Image.new("L", face.size, 255)
        face = face.rotate(tilt, Image.Resampling.BILINEAR, expand=True)
        mask = mask.rotate(tilt, Image.Resampling.BILINEAR, expand=True)
    x0, y0 = int(x - face.width / 2), int(y - face.height / 2)
    if mask is None:
        ImageDraw.Draw(canvas, "RGBA").rectangle((x0 + shadow, y0 + shadow, x0 + shadow + face.width,
                                                  y0 + shadow + face.height), fill=(0, 0, 0, 85))
    else:
        canvas.paste((0, 0, 0), (x0 + shadow, y0 + shadow), ImageChops.multiply(mask, Image.new("L", mask.size, 85)))
    canvas.paste(face, (x0, y0), mask)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """The colour in more or less light: one factor for every channel, so the fabric keeps its hue."""
    return tuple(min(255, int(c * factor)) for c in colour)


def _pod(rng: random.Random, w: int, h: int) -> tuple[Image.Image, tuple[float, float, float, float], tuple[int, ...]]:
    """The pod's inside (back wall, side walls, floor) at render scale; returns it, its opening (l, t, r, b) and this
    pod's fabric colour."""
    u = rng.uniform
    fabric = _shade(FABRIC, u(0.94, 1.04))
    top, bottom = h * u(0.05, 0.14), h * u(0.83, 0.93)
    left, right = w * u(0.0, 0.04), w * (1 - u(0.0, 0.04))
    inset, depth = w * u(0.03, 0.09), h * u(0.03, 0.08)
    canvas = Image.new("RGB", (w, h), _shade(fabric, u(0.5, 0.7)))  # side walls, in shade
    draw = ImageDraw.Draw(canvas)
    back = _shade(fabric, u(0.55, 0.78))
    draw.rectangle((left + inset, top, right - inset, bottom - depth), fill=back)
    draw.polygon(((left + inset, bottom - depth), (right - inset, bottom - depth), (right, bottom), (left, bottom)),
                 fill=_shade(fabric, u(0.65, 0.85)))
    return canvas, (left, top, right, bottom), fabric


def _frame(canvas: Image.Image, rng: random.Random, opening: tuple[float, float, float, float], fabric) -> None:
    """The pod's front: top band and front lip with fold lines, side posts, and neighbouring pods' edges."""
    w, h = canvas.size
    left, top, right, bottom = opening
    draw = ImageDraw.Draw(canvas)
    lip = _shade(fabric, rng.uniform(1.05, 1.2))  # lit from the front
    fold = tuple(int(c * 0.72) for c in fabric)
    draw.rectangle((0, 0, w, top), fill=lip)
    draw.rectangle((0, bottom, w, h), fill=lip)
    draw.rectangle((0, 0, left, h), fill=lip)
    draw.rectangle((right, 0, w, h), fill=lip)
    draw.line(((0, bottom), (w, bottom)), fill=fold, width=max(1, h // 120))
    draw.line(((0, top), (w, top)), fill=fold, width=1)
    if rng.random() < 0.5:  # the gap to the pod above, sometimes with its metal frame
        gap = h * rng.uniform(0.005, 0.03)
        draw.rectangle((0, 0, w, gap), fill=rng.choice(((60, 58, 50), (150, 152, 154))))
    for x in (left, right):
        if rng.random() < 0.5:  # a neighbouring pod's seam and its darker inside
            edge = x + rng.choice((-1, 1)) * w * rng.uniform(0.0, 0.03)
            draw.line(((edge, 0), (edge, h)), fill=fold, width=max(1, w // 200))


@lru_cache(maxsize=1024)
def _tag_at(index: int, height: int) -> Image.Image:
    tag = tag_tiles()[index]
    return tag.resize((height * tag.width // tag.height, height), Image.Resampling.BILINEAR)


def _tag(image: Image.Image, rng: random.Random, x: float, y: float, height: float) -> None:
    image.paste(_tag_at(rng.randrange(len(tag_tiles())), max(6, int(height))), (int(x), int(y)))


def _straps_over(image: Image.Image, rng: random.Random, top: float, bottom: float) -> None:
    """Bands of tight elastic strands across the whole front, pasted at full size so each strand stays thin."""
    w, h = image.size
    u = rng.uniform
    bands = rng.choice((1, 2, 2, 2, 2, 3, 3))
    light = u(210, 245)  # nearly white strands: the light's cast only tints them
    colour = (int(light), int(light * u(0.86, 0.92)), int(light * u(0.72, 0.8)))
    for band in range(bands):
        pitch = round(u(*STRAP_PITCH) * (h / 400) ** STRAP_GROWTH * 2) / 2  # half-pixel steps: few tile sets in use
        strands = rng.randint(14, 40)
        band_h = int(pitch * strands)
        y0 = top + (bottom - top) * (band + u(0.15, 0.85)) / bands - band_h / 2
        tile = rng.choice(strap_tiles(max(2.5, pitch)))
        x = rng.randrange(tile.width - min(tile.width, w) + 1)
        strip = tile.crop((x, 0, x + min(tile.width, w), band_h))
        if rng.random() < 0.1:  # strands pulled out of line by an item behind them
            slope = u(-0.12, 0.12) * band_h / w * 4
            shear = np.array([[1, 0, 0], [-slope, 1, min(0, slope * w)]])  # output (x, y) -> strip (x, y)
            strip = Image.fromarray(cv2.warpAffine(np.asarray(strip), shear, (w, band_h + int(abs(slope) * w)),
                                                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
        image.paste(Image.new("RGB", strip.size, colour), (0, int(y0)), strip)  # an image pastes faster than a fill
        hook = int(w * u(0.01, 0.03))
        end = Image.new("L", (hook, band_h), int(u(60, 140)))
        for x0 in (0, w - hook):
            image.paste(colour, (x0, int(y0)), end)


def render_bin(rng: random.Random, products, size: tuple[int, int] | None = None) -> Image.Image:
    """Draw the pod, its items (back to front) and the front frame small, under uneven light with noise and exposure;
    blur (defocus, sometimes motion) by upscaling; then the tag cards and the straps at full size.
    ``products`` carry ``asin``, ``quantity``, ``face_in`` (inches) and ``look``."""
    width, height = size or sample_size(rng)
    scale = rng.uniform(0.28, 0.48) if rng.random() < 0.85 else rng.uniform(0.15, 0.28)  # the camera's defocus
    w, h = max(8, int(width * scale)), max(8, int(height * scale))
    canvas, opening, fabric = _pod(rng, w, h)
    _items(canvas, rng, products, opening)
    _frame(canvas, rng, opening, fabric)
    _light(canvas, rng)
    image = _defocus(_camera(canvas, rng), rng, (width, height))
    left, top, right, bottom = (v / scale for v in opening)
    tag_h = height * rng.uniform(0.06, 0.09)
    _tag(image, rng, width * rng.uniform(0.2, 0.55), bottom + (height - bottom - tag_h) * rng.uniform(0.2, 0.8),
         tag_h)
    if rng.random() < 0.7:
        _tag(image, rng, width * rng.uniform(0.2, 0.55), max(top - tag_h, 0) * rng.uniform(0, 1) - tag_h * 0.3,
             tag_h)
    _straps_over(image, rng, top, bottom)
    return image


def _light(canvas: Image.Image, rng: random.Random) -> None:
    """Uneven light, a glare spot sometimes, sensor noise and fabric weave, as one multiplicative mask."""
    w, h = canvas.size
    light = light_tile()
    x, y = rng.randrange(light.width - w + 1), rng.randrange(light.height - h + 1)
    mask = light.crop((x, y, x + w, y + h))
    noise = noise_tile(rng.choice((2, 3, 4)))
    x, y = rng.randrange(MAX_SIDE - w + 1), rng.randrange(MAX_SIDE - h + 1)
    mask = ImageChops.add(mask, noise.crop((x, y, x + w, y + h)), 1.0, -128)
    if rng.random() < 0.3:
        glare = glare_tile().resize((int(w * rng.uniform(0.2, 0.6)),) * 2)
        x, y = int(rng.uniform(-0.1, 0.8) * w), int(rng.uniform(-0.1, 0.8) * h)
        region = (x, y, x + glare.width, y + glare.height)
        mask.paste(ImageChops.add(mask.crop(region), glare), region)
        canvas.paste(Image.composite(canvas, Image.new("RGB", canvas.size), mask))
        canvas.paste((255, 255, 250), (0, 0), mask.point(GLARE))
    else:
        canvas.paste(Image.composite(canvas, Image.new("RGB", canvas.size), mask))


def _items(canvas: Image.Image, rng: random.Random, products, opening: tuple[float, float, float, float]) -> None:
    """Every unit, back to front: on the floor, stacked on or beside its ASIN's previous unit, or leaning; large
    enough to fill most of the pod, overlapping each other."""
    left, top, right, bottom = opening
    inner_w, inner_h = right - left, bottom - top
    u = rng.uniform
    ppi = inner_w / u(8, 14)
    shadow = max(1, int(0.12 * ppi))
    crowding = 1 / math.sqrt(1 + 0.08 * max(0, sum(p.quantity for p in products) - 3))
    units = [p for p in products for _ in range(p.quantity)]
    rng.shuffle(units)
    previous: dict[str, tuple[float, float]] = {}
    faces: dict[str, tuple[Image.Image, Image.Image | None]] = {}  # units of one ASIN look alike: draw it once
    for product in units:
        look = product.look
        w, h = (d * ppi * crowding for d in product.face_in)
        rw, rh = (h, w) if look.angle else (w, h)  # its extent once turned
        fit = min(1.0, 0.75 * inner_w / rw, 0.85 * inner_h / rh)
        w, h, rw, rh = max(3, int(w * fit)), max(3, int(h * fit)), rw * fit, rh * fit
        if product.asin in previous and rng.random() < look.stack:
            px, py = previous[product.asin]
            if rng.random() < 0.6:  # side by side
                x, y = px + rng.choice((-1, 1)) * rw * u(0.6, 1.1), py + rh * u(-0.2, 0.1)
            else:  # stacked on top
                x, y = px + rw * u(-0.2, 0.2), py - rh * u(0.6, 1.0)
        elif rng.random() < 0.65:  # resting on the floor
            x, y = u(left + rw * 0.3, right - rw * 0.3), bottom - rh * u(0.35, 0.55)
        else:
            x, y = u(left, right), u(top + rh / 2, bottom)
        previous[product.asin] = (x, y)
        if product.asin not in faces:
            faces[product.asin] = _item(rng, look, w, h)
        _place(canvas, rng, look, *faces[product.asin], x, y, shadow)
