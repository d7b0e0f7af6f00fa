"""Count the items in bin images from the command line: files, folders or an S3 prefix, with the endpoint's own code.

    python -m inference.predict --model runs/model bins/ more/00042.jpg --output counts.csv
    python -m inference.predict --model org/bincount s3://bucket/bin-images/ --metadata s3://bucket/metadata/ \
        --output verified.jsonl

Every image goes through the serving handler's functions (open, decode, pre-process, forward pass, verify) in batches
of ``--batch_size``, so a row here is what the endpoint answers for the same image. Reads overlap (many in flight,
local or S3). An image that cannot be read or decoded becomes a row with an ``error`` and is counted; the run goes on.

Output (``--output``: CSV or JSON Lines by extension; CSV on stdout without it), one row per image in input order:
``id`` (the file name without extension: ABID ids stay strings), ``path``, ``count``, ``expected_count``, a
``p_<label>`` column per class (a ``probabilities`` object in JSON Lines), with expected quantities also
``expected_quantity``, ``match_probability``, ``verdict`` and ``reason``, then ``error``. Expected quantities come
from ``--expected`` (a CSV with ``image_id,expected_quantity``) or ``--metadata`` (a folder or S3 prefix of ABID
``<id>.json``); images without one are counted but not verified.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from tqdm import tqdm
from transformers import HfArgumentParser

from core import storage
from core.cli import UserError, entry_point, parse
from data.abid import METADATA_MISSING, READ_FAILED, BadRecord, parse_metadata
from inference import handler
from inference.backends import load_backend
from inference.handler import BadRequest, CountingModel, Settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
VERIFY_COLUMNS = ["expected_quantity", "match_probability", "verdict", "reason"]


@dataclass
class PredictArguments:
    model: str = field(metadata={"help": "Model folder as training saves it, or a Hugging Face Hub model id."})
    output: str | None = field(default=None, metadata={
        "help": "Results file: .csv or .jsonl (default: CSV on stdout)."})
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    expected: str | None = field(default=None, metadata={
        "help": "CSV of image_id,expected_quantity to verify against."})
    metadata: str | None = field(default=None, metadata={
        "help": "Folder or s3:// prefix of ABID metadata JSONs (<id>.json) to verify against."})
    match_threshold: float | None = field(default=None, metadata={
        "help": "Verify: 'match' when P(expected quantity) >= this (default: $BINCOUNT_MATCH_THRESHOLD, else 0.5)."})
    mismatch_threshold: float | None = field(default=None, metadata={
        "help": "Verify: 'mismatch' when P(expected quantity) <= this (default: $BINCOUNT_MISMATCH_THRESHOLD, "
                "else 0.1)."})
    workers: int = field(default=16, metadata={"help": "Reads in flight (files or S3 objects)."})
    backend: str = field(default="auto", metadata={
        "help": "Forward pass: auto (the fastest correct one here), torch or onnx (ONNX Runtime on CPU, exported "
                "once next to the model); see inference.backends."})


# Find the images

def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def image_id(location: str) -> str:
    """The file name without its extension: ``bin-images/00121.jpg`` is bin ``00121``, never 121."""
    return PurePosixPath(location).stem


def list_images(paths: Iterable[str]) -> list[str]:
    """Every image named or found under the given files, folders (recursively) and S3 prefixes, in a stable order."""
    return storage.list_files(paths, is_image_name)


# Expected quantities

def read_expected(path: str) -> dict[str, int]:
    """``image_id -> expected quantity`` from a CSV with the columns ``image_id,expected_quantity``."""
    with open(path, newline="") as file:
        rows = csv.DictReader(file)
        if not {"image_id", "expected_quantity"} <= set(rows.fieldnames or ()):
            raise ValueError(f"{path} needs the columns image_id,expected_quantity, found {rows.fieldnames}")
        expected = {}
        for row in rows:
            text = (row["expected_quantity"] or "").strip()
            if not text.isdigit():
                raise ValueError(f"{path} line {rows.line_num}: expected_quantity must be a non-negative integer, "
                                 f"got {text!r}")
            expected[row["image_id"].strip()] = int(text)
    return expected


def read_metadata(location: str, ids: set[str], read: Callable[[str], bytes], workers: int
                  ) -> tuple[dict[str, int], Counter]:
    """Expected quantities of ``ids`` from ABID metadata under a folder or S3 prefix, and why others have none."""
    if not storage.is_remote(location) and not Path(location).is_dir():
        raise FileNotFoundError(f"no such metadata folder: {location}")
    files = storage.list_files([location], lambda name: name.endswith(".json"))
    wanted = {image_id(f): f for f in files if image_id(f) in ids}  # listed, never constructed from the id
    expected, problems = {}, Counter({METADATA_MISSING: len(ids - set(wanted))})
    for key, raw in zip(wanted, storage.read_many(read, wanted.values(), workers)):
        try:
            if isinstance(raw, Exception):
                raise BadRecord(READ_FAILED, str(raw))
            expected[key] = parse_metadata(raw).expected_quantity
        except BadRecord as error:
            problems[error.reason] += 1
    return expected, +problems


# Predict

def predict_images(model: CountingModel, contents: Iterable[tuple[str, bytes | Exception]], batch_size: int,
                   expected: dict[str, int], settings: Settings, forward: Callable | None = None,
                   thresholds: dict[str, float] | None = None) -> Iterator[dict]:
    """One row per image, in order: one forward pass per batch of the images that decode, an error for the rest.

    ``thresholds`` are the verify thresholds given on the command line; the others are the handler's to resolve
    (environment, the model's verify.json, built-in defaults)."""
    thresholds = thresholds or {}
    contents = iter(contents)
    while batch := list(islice(contents, batch_size)):
        rows, good = [], []
        for location, data in batch:
            row: dict[str, Any] = {"id": image_id(location), "path": location}
            rows.append(row)
            try:
                if isinstance(data, Exception):
                    raise BadRequest(f"cannot read: {data}")
                image = handler.open_image(data, location, settings.max_image_pixels)
                good.append((row, handler.decode_image(image, location)))
            except BadRequest as error:
                row["error"] = " ".join(str(error).split())
        if good:
            request = handler.Request(
                images=[image for _, image in good], names=[row["path"] for row, _ in good], single=False,
                expected=[expected.get(row["id"]) for row, _ in good], top_k=None,
                match_threshold=thresholds.get("match_threshold"),
                mismatch_threshold=thresholds.get("mismatch_threshold"))
            for (row, _), answer in zip(good, handler.predict(model, request, forward)):
                row.update(answer)
        yield from rows


# Write the results

def results_format(path: str | None) -> str:
    if path is None:
        return "csv"
    if (kind := FORMATS.get(Path(path).suffix.lower())) is None:
        raise ValueError(f"cannot tell the output format of {path}: use .csv or .jsonl")
    return kind


class ResultWriter:
    """Result rows to CSV (one ``p_<label>`` column per class) or JSON Lines (as the handler answers them)."""

    def __init__(self, path: str | None, labels: list[str], verify: bool):
        self.kind = results_format(path)
        self.file: TextIO = open(path, "w", newline="") if path else sys.stdout
        self.labels = labels
        columns = ["id", "path", "count", "expected_count", *(f"p_{label}" for label in labels)]
        self.columns = columns + (VERIFY_COLUMNS if verify else []) + ["error"]
        if self.kind == "csv":
            self.csv = csv.DictWriter(self.file, self.columns, extrasaction="ignore")
            self.csv.writeheader()

    def write(self, row: dict) -> None:
        if self.kind == "jsonl":
            self.file.write(json.dumps(row) + "\n")
            return
        probabilities = row.get("probabilities") or {}
        self.csv.writerow({**row, **{f"p_{label}": probabilities.get(label) for label in self.labels}})

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not sys.stdout:
            self.file.close()


def summary(rows: int, errors: int, verdicts: Counter, unverified: Counter, output: str | None) -> str:
    text = f"{rows} images: {rows - errors} counted, {errors} errors"
    if verdicts:
        text += "; verdicts " + ", ".join(f"{n} {verdict}" for verdict, n in sorted(verdicts.items()))
    if unverified:
        text += "; not verified " + ", ".join(f"{n} {reason}" for reason, n in sorted(unverified.items()))
    return text + (f"; written to {output}" if output else "")


@entry_point(user_errors=(BadRequest,))  # a request-wide problem (thresholds): the user's to fix
def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser(PredictArguments, prog="python -m inference.predict")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Image files, folders or s3:// prefixes.")
    args, rest = parse(parser, argv)

    # Check every input, then load the model
    try:
        if args.expected and args.metadata:
            raise ValueError("give --expected or --metadata, not both")
        if args.batch_size < 1 or args.workers < 1:
            raise ValueError("--batch_size and --workers must be at least 1")
        results_format(args.output)
        thresholds = {name: getattr(args, name) for name in ("match_threshold", "mismatch_threshold")
                      if getattr(args, name) is not None}
        settings = replace(Settings.from_env(), **thresholds).checked()  # before the model loads
        locations = list_images(rest.paths)
        if not locations:
            raise FileNotFoundError(f"no images found in {' '.join(rest.paths)}")
        read = storage.reader()
        expected, unverified = {}, Counter()
        if args.expected:
            expected = read_expected(args.expected)
            unverified = +Counter({"no_expected_quantity": sum(image_id(loc) not in expected for loc in locations)})
        elif args.metadata:
            expected, unverified = read_metadata(args.metadata, {image_id(loc) for loc in locations}, read,
                                                 args.workers)
        model = handler.model_fn(args.model)
        forward = load_backend(model, args.model, args.backend)
    except (OSError, ValueError) as error:  # a missing file, a bad option or model: the user's to fix
        raise UserError(str(error)) from None

    # Count, batch by batch, reading ahead
    contents = zip(locations, storage.read_many(read, locations, args.workers))
    errors, verdicts = 0, Counter()
    verify = bool(args.expected or args.metadata)
    with ResultWriter(args.output, model.labels, verify) as writer, \
            tqdm(total=len(locations), unit="img", desc="counting") as progress:
        for row in predict_images(model, contents, args.batch_size, expected, settings, forward, thresholds):
            writer.write(row)
            errors += "error" in row
            verdicts.update([row["verdict"]] if "verdict" in row else [])
            progress.update()
    print(summary(len(locations), errors, verdicts, unverified, args.output), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
