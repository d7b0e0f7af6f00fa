"""Synthetic ABID bins: the project's offline default dataset, laid out like the public bucket ``s3://aft-vbi-pds``.

    python -m data.synthetic --output DIR --num_images N --seed S [--min_count 0] [--max_count 5] [--num_proc 1]
                             [--overwrite]

writes ``DIR/bin-images/<id>.jpg`` and ``DIR/metadata/<id>.json`` (the real ABID schema) for ids ``00001``, ``00002``…,
and ``DIR/synthetic.json``: the settings that made them, which also tells ``data.build`` the bins are synthetic.
Each image is drawn to resemble an ABID photo (``data.synthetic_render``): a close, slightly blurred view of a yellow
fabric pod crossed by bands of tight elastic straps, with the neighbouring pods' edges and coloured tag cards in view,
holding printed boxes, books, wrapped and clear bags, bottles and soft goods (units of one ASIN share their look) that
fill it, overlap and stack; under uneven light, glare, a warm cast, defocus and motion blur and sensor noise, saved as
JPEG quality 95 at ABID's image sizes. ``python -m data.realism`` measures how close that is to real bins.
Counts follow ABID's class balance (see ``ABID_COUNT_SHARE``).

Image ``i`` depends only on ``(seed, i)``: the output is the same whatever ``num_proc`` is and however often a run was
interrupted. Files are written atomically; a re-run skips ids whose jpg and json both exist (and refuses a folder made
with other settings, but redraws one made with the same settings by an older generator); ``--overwrite`` redoes them.

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
import multiprocessing
import os
import random
import string
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from core.cli import entry_point, parse
from data.synthetic_render import Look, render_bin, sample_look, sample_size

__all__ = ["bin_id", "count_weights", "generate", "make_bin", "make_metadata", "render_bin", "sample_products",
           "sample_size"]

# Share of each count 0..5 in abid_challenge's "moderate" validation list (36,032 bins,
# ../shared/abid-sample/lists/abid_challenge_counting_val.json): 966, 4098, 7622, 8951, 8054, 6341 bins.
ABID_COUNT_SHARE = (0.0268, 0.1137, 0.2115, 0.2484, 0.2235, 0.1760)
# Above 5 each count is this much rarer than the one before it (ABID's 4 -> 5 ratio is about 0.79).
TAIL_DECAY = 0.7
MAX_COUNT = 100
# How readily another unit of an ASIN already in the bin is added rather than a new ASIN (Chinese restaurant process):
# lower means fewer ASINs with more units each; 2 gives ABID's typical 2-3 ASINs in a bin of 4-5 items.
NEW_ASIN_WEIGHT = 2.0
# ABID's JPEGs: quality 95 (their quantisation tables match libjpeg's at 95) with 4:2:0 chroma subsampling.
JPEG_QUALITY = 95
MARKER = "synthetic.json"
# Bumped whenever the same (seed, i) draws a different bin, so a folder from an older generator is not resumed.
GENERATOR_VERSION = 3

# (product, shape, (length, width, height) in inches): a small vocabulary of things a fulfilment centre stows.
PRODUCTS = (
    ("Spin-On Oil Filter", "can", (3.9, 2.9, 2.8)),
    ("Braided USB-C Cable, 6.6 Ft", "clear", (7.0, 4.0, 1.0)),
    ("Natural Toothpaste, 4.7 Ounce", "box", (7.5, 1.8, 1.6)),
    ("LED Light Bulb, Warm White", "box", (5.0, 4.0, 4.0)),
    ("Stainless Steel Water Bottle, 24 Oz", "bottle", (10.0, 3.0, 3.0)),
    ("Slim Phone Case", "flat", (6.5, 3.5, 0.6)),
    ("Spiral Notebook, College Ruled", "book", (10.5, 8.0, 0.5)),
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
    ("Paperback Cookbook", "book", (8.0, 5.3, 0.9)),
    ("Hardcover Novel", "book", (9.5, 6.4, 1.3)),
    ("Squeaky Dog Chew Toy", "soft", (6.0, 4.0, 2.0)),
    ("Jigsaw Puzzle, 1000 Pieces", "box", (10.0, 7.0, 2.2)),
    ("Digital Sport Watch", "box", (4.0, 3.0, 2.5)),
    ("Kinesiology Tape Roll", "can", (4.0, 4.0, 2.5)),
    ("Elastic Hair Ties, 30 Pack", "blister", (6.0, 3.0, 0.5)),
    ("Car Air Freshener", "blister", (6.5, 3.5, 0.6)),
    ("Cooling Fan 80mm", "box", (3.5, 3.5, 1.2)),
    ("Microfiber Cleaning Cloths", "clear", (8.0, 6.0, 2.0)),
    ("Fleece Throw Blanket", "soft", (12.0, 10.0, 4.0)),
    ("Plush Teddy Bear", "soft", (9.0, 7.0, 5.0)),
    ("Women's Rain Jacket", "bag", (12.0, 10.0, 2.5)),
    ("Replacement Vacuum Filters, 2 Pack", "clear", (6.0, 5.0, 2.0)),
)
BRANDS = ("Acme", "Brightline", "Northwind", "Kestrel", "Solano", "Pinecrest", "Vantor", "Luma", "Orbix", "Tidewell",
          "Maple Row", "Zentra", "Copperleaf", "Quillon", "Redstone", "Harbor & Finch")
COLOURS = ("Black", "White", "Red", "Blue", "Navy", "Green", "Yellow", "Orange", "Pink", "Grey", "Purple", "Teal")
ASIN_CHARS = string.ascii_uppercase + string.digits


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
    colour_name = rng.choice(COLOURS)
    name = f"{rng.choice(BRANDS)} {noun}" + (f", {colour_name}" if rng.random() < 0.4 else "")
    normalized = name
    if rng.random() < 0.2:  # real ABID names carry pack sizes that normalizedName moves to the front
        pack = rng.choice(("(Pack of {})", "{} Pack")).format(rng.choice((2, 3, 4, 6, 12)))
        name, normalized = f"{name} {pack}", f"{pack} {name}"
    weight = round(size[0] * size[1] * size[2] * rng.uniform(0.008, 0.04) + 0.05, 2)
    face = (size[0], size[1]) if shape == "flat" else (size[0], max(size[1], size[2]))
    return Product(asin, name, normalized, quantity, size, weight, face, sample_look(rng, shape))


def make_metadata(products: list[Product]) -> dict:
    """The bin's metadata document in ABID's schema; ``EXPECTED_QUANTITY`` is the sum of the quantities."""
    def inches(value: float) -> dict:
        return {"unit": "IN", "value": value}

    items = {p.asin: {"asin": p.asin, "name": p.name, "normalizedName": p.normalized_name, "quantity": p.quantity,
                      "length": inches(p.size_in[0]), "width": inches(p.size_in[1]), "height": inches(p.size_in[2]),
                      "weight": {"unit": "pounds", "value": p.weight_lb}}
             for p in products}
    return {"BIN_FCSKU_DATA": items, "EXPECTED_QUANTITY": sum(p.quantity for p in products)}


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
    image.save(jpeg, "JPEG", quality=JPEG_QUALITY, subsampling=2)
    name = bin_id(index)
    _write_atomic(output / "bin-images" / f"{name}.jpg", jpeg.getvalue())
    _write_atomic(output / "metadata" / f"{name}.json", json.dumps(metadata, indent=4, sort_keys=True).encode())


def _claim(output: Path, settings: dict, overwrite: bool) -> bool:
    """Record the settings in ``synthetic.json``; refuse to add bins to a folder made with other ones. Returns whether
    every bin must be redrawn: ``overwrite``, or the same settings drawn by an older generator (its bins are stale,
    and a re-run of the same command should bring them up to date rather than fail)."""
    marker = output / MARKER
    previous = json.loads(marker.read_text()) if marker.is_file() else None
    if previous == settings:
        return overwrite
    stale = previous is not None and {**previous, "version": settings["version"]} == settings
    if previous is not None and not (overwrite or stale):
        raise ValueError(f"{output} holds bins made with {previous}, not {settings}; "
                         "choose another folder or pass --overwrite")
    if stale:
        print(f"{output}: bins from generator version {previous.get('version')}, redrawing them with version "
              f"{settings['version']}", file=sys.stderr)
    _write_atomic(marker, json.dumps(settings, indent=4).encode())
    return overwrite or stale


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
    redraw = _claim(output, {"generator": "data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
                             "min_count": min_count, "max_count": max_count}, overwrite)
    (output / "bin-images").mkdir(exist_ok=True)
    (output / "metadata").mkdir(exist_ok=True)
    done = set() if redraw else _stems(output / "bin-images", ".jpg") & _stems(output / "metadata", ".json")
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


@entry_point(user_errors=(ValueError, OSError))  # bad options or an unwritable output: one error line, exit 2
def main(argv: list[str] | None = None) -> None:
    from transformers import HfArgumentParser  # slow to import; only the command line needs it

    (args,) = parse(HfArgumentParser(SyntheticArguments), argv)
    written = generate(Path(args.output), args.num_images, args.seed, args.min_count, args.max_count,
                       args.num_proc, args.overwrite)
    print(f"wrote {written} of {args.num_images} bins to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
