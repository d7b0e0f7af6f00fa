"""ABID records: metadata parsing and the labelling rules — what is kept, what is dropped, and why.

A bin's label is its ``EXPECTED_QUANTITY``. A bin whose metadata is missing or unreadable is dropped, never labelled 0
(the abid_challenge scripts label such bins 0, which silently corrupts the empty-bin class). Ids are strings:
``121`` and ``00121`` are different bins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Why a record is skipped as bad data. Each bad record is counted under one of these in the build report.
METADATA_MISSING = "metadata_missing"
METADATA_UNREADABLE = "metadata_unreadable"
QUANTITY_MISSING = "quantity_missing"
QUANTITY_INVALID = "quantity_invalid"
IMAGE_MISSING = "image_missing"
IMAGE_EMPTY = "image_empty"
IMAGE_NOT_JPEG = "image_not_jpeg"
IMAGE_CORRUPT = "image_corrupt"
IMAGE_TOO_LARGE = "image_too_large"
DUPLICATE_ID = "duplicate_id"
READ_FAILED = "read_failed"

# Why a good record is left out by the user's selection (counted, not listed one by one).
NOT_IN_SUBSET = "not_in_subset"
COUNT_OUT_OF_RANGE = "count_out_of_range"


class BadRecord(Exception):
    """A record that cannot be used, with the reason it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class BinMetadata:
    expected_quantity: int
    num_asins: int


def parse_metadata(raw: bytes) -> BinMetadata:
    """Parse one ``metadata/<id>.json``; raise ``BadRecord`` for anything that cannot give a trustworthy label."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRecord(METADATA_UNREADABLE, str(error)) from None
    if not isinstance(doc, dict):
        raise BadRecord(METADATA_UNREADABLE, f"expected a JSON object, got {type(doc).__name__}")
    if "EXPECTED_QUANTITY" not in doc:
        raise BadRecord(QUANTITY_MISSING)
    quantity = doc["EXPECTED_QUANTITY"]
    # bool is an int in Python; 3.0 or "3" are not integers in the ABID schema.
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise BadRecord(QUANTITY_INVALID, f"EXPECTED_QUANTITY={quantity!r}")
    items = doc.get("BIN_FCSKU_DATA") or {}
    return BinMetadata(expected_quantity=quantity, num_asins=len(items) if isinstance(items, dict) else 0)
