"""One listing of candidate bins from any source: ``s3://bucket[/prefix]``, a local mirror, or count folders.

Layouts (detected from what is listed; key names are never constructed):
- bucket: ``<root>/bin-images/<id>.jpg`` + ``<root>/metadata/<id>.json`` — the public ``s3://aft-vbi-pds`` layout;
- count folders: ``<root>/[<split>/]<count>/<id>.jpg`` — what the capstone notebooks produced.

The bucket listing is a merge-join of two key streams sorted by id, so memory stays flat for 535k images.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from core.storage import Store

DEFAULT_SOURCE = "s3://aft-vbi-pds"
IMAGES, METADATA = "bin-images/", "metadata/"
_COUNT_KEY = re.compile(r"^(?:(?P<split>[^/]+)/)?(?P<count>\d+)/(?P<name>[^/]+)$")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
                  "validation": "validation", "test": "test", "testing": "test"}


@dataclass(frozen=True)
class Candidate:
    """A bin as listed: its keys (None when missing) and, for count folders, the folder's count and split."""

    image_id: str
    image_key: str | None
    metadata_key: str | None = None
    folder_count: int | None = None
    folder_split: str | None = None
    duplicate: bool = False


def _stem(key: str) -> str:
    return PurePosixPath(key).stem


def candidates(store: Store) -> Iterator[Candidate]:
    """Every bin the source lists, in a deterministic order, whatever its layout."""
    images = store.list(IMAGES)
    first = next(images, None)
    if first is not None:
        yield from _join(_chain(first, images), store.list(METADATA))
        return
    if next(store.list(METADATA), None) is not None:  # metadata without any image
        yield from _join(iter(()), store.list(METADATA))
        return
    yield from _count_folders(store.list())


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _join(image_keys: Iterator[str], metadata_keys: Iterator[str]) -> Iterator[Candidate]:
    """Merge two key streams sorted by key into candidates; an id missing on one side keeps a None key.

    Keys sort as ``id + "." + extension``, so ids are compared as ``id + "."`` to follow the listing order.
    """
    images = ((_stem(k) + ".", k) for k in image_keys if k.lower().endswith((".jpg", ".jpeg")))
    metas = ((_stem(k) + ".", k) for k in metadata_keys if k.lower().endswith(".json"))
    image = next(images, None)
    meta = next(metas, None)
    previous = None
    while image or meta:
        if meta is None or (image is not None and image[0] < meta[0]):
            order = image[0]
            current = Candidate(order[:-1], image[1], None)
            image = next(images, None)
        elif image is None or meta[0] < image[0]:
            order = meta[0]
            current = Candidate(order[:-1], None, meta[1])
            meta = next(metas, None)
        else:
            order = image[0]
            current = Candidate(order[:-1], image[1], meta[1])
            image = next(images, None)
            meta = next(metas, None)
        if previous is not None and order <= previous:
            if order < previous:
                raise RuntimeError(f"source listing is not in key order at {current.image_id!r}")
            current = Candidate(current.image_id, current.image_key, current.metadata_key, duplicate=True)
        previous = order
        yield current


def _count_folders(keys: Iterator[str]) -> Iterator[Candidate]:
    """``[<split>/]<count>/<id>.jpg`` keys as candidates labelled by their folder; ids sorted, duplicates flagged."""
    found = []
    for key in keys:
        match = _COUNT_KEY.match(key)
        if not match:
            continue
        split = match["split"]
        if split is not None and split.lower() not in _SPLIT_ALIASES:
            continue
        found.append(Candidate(_stem(match["name"]), key, None, int(match["count"]),
                               _SPLIT_ALIASES[split.lower()] if split else None))
    found.sort(key=lambda c: (c.image_id, c.image_key))
    previous = None
    for candidate in found:
        if candidate.image_id == previous:
            candidate = Candidate(candidate.image_id, candidate.image_key, None, candidate.folder_count,
                                  candidate.folder_split, duplicate=True)
        previous = candidate.image_id
        yield candidate
