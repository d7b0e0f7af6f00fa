"""Turn listed bins into parquet shards (one per split per chunk) and chunk reports, in parallel.

A chunk is the unit of work, of parallelism and of resumption: its report is written last, atomically, so a chunk
with a report is finished and a killed build redoes at most the chunks that were in flight. Reads overlap (many GETs
in flight per worker process), so a build from a real bucket is bound by CPU, not by S3 latency.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, Image, Value
from tqdm.auto import tqdm

from core.labels import LabelSpace
from core.storage import Store, read_many
from data import abid
from data.images import prepare
from data.sources import Candidate
from data.subsets import hash_split

logger = logging.getLogger("data.build")

SHARD_FEATURES = Features({
    "image": Image(),
    "label": Value("int64"),
    "image_id": Value("string"),
    "expected_quantity": Value("int32"),
    "num_asins": Value("int32"),
    "original_width": Value("int32"),
    "original_height": Value("int32"),
})


@dataclass(frozen=True)
class ChunkSettings:
    """Everything a worker needs to process chunks the same way in any process or on any host."""

    store: Store
    labels: LabelSpace
    split_ratios: tuple[float, float, float]
    split_lists: dict[str, frozenset[str]] | None
    shorter_side: int | None
    max_pixels: int
    jpeg_quality: int
    io_threads: int


def shard_paths(work_dir: Path, index: int) -> tuple[Path, str]:
    """Folder and file-name prefix of chunk ``index``'s shards; its report is ``<prefix>.json``."""
    return work_dir / "shards", f"{index:06d}"


def report_path(work_dir: Path, index: int) -> Path:
    folder, prefix = shard_paths(work_dir, index)
    return folder / f"{prefix}.json"


def process_chunk(settings: ChunkSettings, work_dir: Path, index: int, chunk: list[Candidate], reader=None) -> dict:
    """Process one chunk end to end and return its report (also written to ``report_path``)."""
    reader = reader or settings.store.reader()
    dropped: list[tuple[str, str, str]] = []
    excluded: Counter[str] = Counter()
    # Labels first: metadata is small, and bins outside the count range need no image download.
    labelled = _labelled(settings, reader, chunk, dropped, excluded)
    rows = _encoded(settings, reader, labelled, dropped)
    folder, prefix = shard_paths(work_dir, index)
    folder.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        table = pa.Table.from_pylist(split_rows, schema=SHARD_FEATURES.arrow_schema)
        _atomic(folder / f"{prefix}-{split}.parquet", lambda tmp: pq.write_table(table, tmp))
    report = {
        "index": index,
        "candidates": len(chunk),
        "kept": {split: dict(Counter(str(r["label"]) for r in split_rows)) for split, split_rows in rows.items()},
        "dropped": dropped,
        "excluded": dict(excluded),
    }
    _atomic(report_path(work_dir, index), lambda tmp: Path(tmp).write_text(json.dumps(report)))
    return report


def _usable(chunk: list[Candidate], dropped: list[tuple[str, str, str]]) -> list[Candidate]:
    """The candidates with an image and a label source; the others are dropped with their reason."""
    usable = []
    for candidate in chunk:
        if candidate.duplicate:
            dropped.append((candidate.image_id, abid.DUPLICATE_ID, candidate.image_key or candidate.metadata_key or ""))
        elif candidate.image_key is None:
            dropped.append((candidate.image_id, abid.IMAGE_MISSING, ""))
        elif candidate.metadata_key is None and candidate.folder_count is None:
            dropped.append((candidate.image_id, abid.METADATA_MISSING, ""))
        else:
            usable.append(candidate)
    return usable


def _labelled(settings: ChunkSettings, reader, chunk: list[Candidate], dropped: list[tuple[str, str, str]],
              excluded: Counter) -> list[tuple[Candidate, int, int, int, str]]:
    """(candidate, quantity, asins, label, split) of every usable bin in the selected count range."""
    usable = _usable(chunk, dropped)
    with_metadata = [c for c in usable if c.metadata_key is not None]
    metadata = dict(zip((c.image_id for c in with_metadata),
                        read_many(reader, (c.metadata_key for c in with_metadata), settings.io_threads)))
    labelled = []
    for candidate in usable:
        if candidate.metadata_key is None:
            quantity, asins = candidate.folder_count, -1
        else:
            raw = metadata[candidate.image_id]
            try:
                if isinstance(raw, Exception):
                    raise abid.BadRecord(abid.READ_FAILED, f"{candidate.metadata_key}: {raw}")
                parsed = abid.parse_metadata(raw)
            except abid.BadRecord as bad:
                dropped.append((candidate.image_id, bad.reason, bad.detail))
                continue
            quantity, asins = parsed.expected_quantity, parsed.num_asins
        label = settings.labels.label_of(quantity)
        if label is None:
            excluded[abid.COUNT_OUT_OF_RANGE] += 1
            continue
        labelled.append((candidate, quantity, asins, label, _split_of(settings, candidate)))
    return labelled


def _split_of(settings: ChunkSettings, candidate: Candidate) -> str:
    """The source's split folder, else the split lists, else the hash of the id."""
    if candidate.folder_split:
        return candidate.folder_split
    listed = _list_split(settings.split_lists, candidate.image_id)
    if listed:
        return listed
    return hash_split(candidate.image_id, settings.split_ratios)


def _encoded(settings: ChunkSettings, reader, labelled: list[tuple[Candidate, int, int, int, str]],
             dropped: list[tuple[str, str, str]]) -> dict[str, list[dict]]:
    """Shard rows per split: each labelled bin's image read, checked and resized; unreadable ones dropped."""
    rows: dict[str, list[dict]] = {}
    images = read_many(reader, (entry[0].image_key for entry in labelled), settings.io_threads)
    for (candidate, quantity, asins, label, split), raw in zip(labelled, images):
        try:
            if isinstance(raw, Exception):
                raise abid.BadRecord(abid.READ_FAILED, f"{candidate.image_key}: {raw}")
            image = prepare(raw, settings.shorter_side, settings.max_pixels, settings.jpeg_quality)
        except abid.BadRecord as bad:
            dropped.append((candidate.image_id, bad.reason, bad.detail))
            continue
        rows.setdefault(split, []).append({
            "image": {"bytes": image.data, "path": candidate.image_key},
            "label": label, "image_id": candidate.image_id, "expected_quantity": quantity, "num_asins": asins,
            "original_width": image.original_size[0], "original_height": image.original_size[1],
        })
    return rows


def chunks(stream: Iterator[Candidate], size: int) -> Iterator[tuple[int, list[Candidate]]]:
    index = 0
    while chunk := list(islice(stream, size)):
        yield index, chunk
        index += 1


_worker_reader = None


def _init_worker(settings: ChunkSettings) -> None:
    global _worker_reader
    _worker_reader = settings.store.reader()


def _run_chunk(job: tuple[ChunkSettings, Path, int, list[Candidate]]) -> dict:
    settings, work_dir, index, chunk = job
    return process_chunk(settings, work_dir, index, chunk, _worker_reader)


def process_chunks(settings: ChunkSettings, work_dir: Path, stream: Iterator[Candidate], chunk_size: int,
                   num_proc: int, host: tuple[int, int]) -> tuple[int, int]:
    """Process every unfinished chunk of this host; returns (total chunks listed, bins processed in this run).

    Listing runs here in the main thread (so its errors surface here), feeding at most ``2 * num_proc`` chunks to
    the workers at a time, so memory stays flat however long the listing is.
    """
    num_hosts, host_index = host
    processed, total = 0, 0
    with tqdm(desc="bins", unit="img", dynamic_ncols=True) as progress:

        def done(report: dict | BaseException) -> None:
            nonlocal processed
            if isinstance(report, BaseException):
                raise report
            processed += report["candidates"]
            progress.update(report["candidates"])
            for image_id, reason, detail in report["dropped"]:
                logger.warning("skipped %s: %s%s", image_id, reason, f" ({detail})" if detail else "")

        def jobs() -> Iterator[tuple]:
            nonlocal total
            for index, chunk in chunks(stream, chunk_size):
                total = index + 1
                if index % num_hosts != host_index:
                    continue
                if report_path(work_dir, index).is_file():
                    progress.update(len(chunk))
                    continue
                yield settings, work_dir, index, chunk

        if num_proc <= 1:
            _init_worker(settings)
            for job in jobs():
                done(_run_chunk(job))
            return total, processed
        results: queue.Queue = queue.Queue()
        with multiprocessing.get_context("fork").Pool(num_proc, _init_worker, (settings,)) as pool:
            pending = 0
            for job in jobs():
                if pending >= 2 * num_proc:
                    done(results.get())
                    pending -= 1
                pool.apply_async(_run_chunk, (job,), callback=results.put, error_callback=results.put)
                pending += 1
            for _ in range(pending):
                done(results.get())
    return total, processed


def _list_split(split_lists: dict[str, frozenset[str]] | None, image_id: str) -> str | None:
    for split, ids in (split_lists or {}).items():
        if image_id in ids:
            return split
    return None


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(str(tmp))
    os.replace(tmp, path)
