"""Which bins to take and which split each goes to.

Subset lists come in the two published formats: the Udacity capstone ``file_list.json`` (``{"1": ["data/metadata/
100313.json", ...], ...}``) and the abid_challenge lists (``[[idx0, count], ...]`` naming image ``"%05d.jpg" %
(idx0 + 1)``). Splits come from such lists, from ``<split>/<count>/`` folders, or from a hash of the image id — stable
across machines and runs and independent of listing order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

SPLITS = ("train", "validation", "test")


def load_id_list(path: str | Path) -> set[str]:
    """Image ids named by a Udacity ``file_list.json`` or an abid_challenge ``[[idx0, count], ...]`` list."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read subset list {path}: {error}") from None
    if isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()):
        return {PurePosixPath(str(entry)).stem for entries in doc.values() for entry in entries}
    if isinstance(doc, list) and all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) for e in doc):
        return {"%05d" % (idx0 + 1) for idx0, _ in doc}
    raise ValueError(f"{path}: not a Udacity file_list.json ({{count: [paths]}}) or an abid_challenge "
                     f"[[idx0, count], ...] list")


def parse_split_files(specs: list[str]) -> dict[str, set[str]]:
    """``["train=a.json", "test=b.json"]`` -> {split: ids}; an id may belong to one split only."""
    splits: dict[str, set[str]] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or name not in SPLITS:
            raise ValueError(f"--split_files expects {'|'.join(SPLITS)}=PATH, got {spec!r}")
        splits[name] = load_id_list(path)
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if overlap := splits[a] & splits[b]:
                raise ValueError(f"{len(overlap)} ids are in both the {a} and {b} lists, e.g. {min(overlap)}")
    return splits


def hash_split(image_id: str, ratios: tuple[float, float, float]) -> str:
    """Deterministic split from the id alone: the same bin lands in the same split on every machine and run."""
    position = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big") / 2**64
    total = sum(ratios)
    edge = 0.0
    for name, ratio in zip(SPLITS, ratios):
        edge += ratio / total
        if position < edge:
            return name
    return SPLITS[-1]
