"""Build the ABID bin-count dataset: ``python -m data.build --source SRC --output DIR``.

Sources: ``s3://bucket[/prefix]`` (default the public ``s3://aft-vbi-pds``, unsigned when no credentials exist;
``--endpoint_url`` for S3-compatible stores), a local folder with the bucket layout, or count folders. The output is a
``DatasetDict`` (``datasets.load_from_disk(DIR)``) with a dataset card, a class histogram, ``build_report.json`` and
``dropped.jsonl`` (every bad record and why).

Streaming and resumable: bins are listed lazily and processed in chunks (in ``--num_proc`` processes, many reads in
flight each); every finished chunk is a set of parquet shards in ``--work_dir``. A killed build started again redoes
only unfinished chunks and produces the same dataset. On several hosts (a SageMaker Processing job), each host takes
every ``num_hosts``-th chunk with ``--shards_only``; ``--assemble_from`` then merges the hosts' shards.

Examples::

    python -m data.build --output runs/abid-moderate                                   # counts 0-5, whole bucket
    python -m data.build --output runs/udacity --min_count 1 --subset file_list.json   # the capstone subset
    python -m data.build --output runs/hard --max_count 20 --overflow_bucket           # all counts, 21+ bucket
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

from transformers import HfArgumentParser

from cloud import s3
from core import storage
from core.cli import UserError, entry_point, parse
from core.labels import LabelSpace
from core.storage import Store
from data import abid, card
from data.assemble import assemble, fetch_shards, push
from data.shards import ChunkSettings, process_chunks
from data.sources import DEFAULT_SOURCE, Candidate, candidates
from data.subsets import SPLITS, load_id_list, parse_split_files

logger = logging.getLogger("data.build")


@dataclass
class SourceArguments:
    source: str = field(default=DEFAULT_SOURCE, metadata={
        "help": "s3://bucket[/prefix], a local folder with bin-images/ + metadata/, or count folders <root>/<count>/."})
    endpoint_url: str | None = field(default=None, metadata={"help": "S3-compatible endpoint (default: AWS)."})
    unsigned: bool = field(default=False, metadata={
        "help": "Force anonymous S3 requests (automatic when no AWS credentials are found)."})


@dataclass
class SelectionArguments:
    min_count: int = field(default=0, metadata={"help": "Smallest count kept (1 for the Udacity capstone task)."})
    max_count: int = field(default=5, metadata={"help": "Largest count kept as its own class; -1 keeps every count."})
    overflow_bucket: bool = field(default=False, metadata={
        "help": "Keep counts above max_count in one last class named '<max_count+1>+'."})
    subset: str | None = field(default=None, metadata={
        "help": "Only ids in this list: a Udacity file_list.json or an abid_challenge [[idx0, count], ...] file."})
    split_files: list[str] = field(default_factory=list, metadata={
        "help": "Take splits from lists instead of hashing ids, e.g. train=counting_train.json test=counting_val.json"})
    split_ratios: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1], metadata={
        "help": "train/validation/test fractions for the id-hash split."})
    limit: int | None = field(default=None, metadata={"help": "Consider only the first N listed bins (quick runs)."})


@dataclass
class OutputArguments:
    output: str = field(metadata={"help": "Folder for the DatasetDict, card, histogram and report."})
    shorter_side: int = field(default=256, metadata={"help": "Resize images once so their shorter side is this."})
    keep_original: bool = field(default=False, metadata={"help": "Keep the original JPEG bytes (no resize)."})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality of resized images."})
    max_pixels: int = field(default=40_000_000, metadata={"help": "Larger images are dropped as decompression bombs."})
    num_proc: int = field(default=os.cpu_count() or 1, metadata={"help": "Worker processes."})
    io_threads: int = field(default=32, metadata={"help": "Reads in flight per worker process."})
    chunk_size: int = field(default=250, metadata={"help": "Bins per chunk (unit of work and of resumption)."})
    work_dir: str | None = field(default=None, metadata={
        "help": "Shards of an unfinished build (default OUTPUT.work)."})
    keep_work_dir: bool = field(default=False, metadata={"help": "Keep the shards after a successful build."})
    overwrite: bool = field(default=False, metadata={"help": "Rebuild from scratch even if OUTPUT or shards exist."})
    shards_only: bool = field(default=False, metadata={
        "help": "Only write this host's shards to OUTPUT (one host of a multi-host build); no assembly."})
    num_hosts: int | None = field(default=None, metadata={"help": "Hosts sharing the build (default: SageMaker's)."})
    host_index: int | None = field(default=None, metadata={"help": "This host's index (default: SageMaker's)."})
    assemble_from: list[str] = field(default_factory=list, metadata={
        "help": "Assemble shards written by --shards_only hosts (folders or s3:// prefixes) instead of building."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Hub dataset id to publish to (token: HF_TOKEN)."})
    private: bool = field(default=False, metadata={"help": "Create the Hub dataset as private."})
    config_name: str = field(default="default", metadata={
        "help": "Hub configuration to publish as (files under <name>/), so one dataset repo holds several "
                "(moderate, udacity, hard): load_dataset(ID, NAME)."})

    def __post_init__(self) -> None:
        """Sizes and counts below 1 would build an empty or unreadable dataset, or none at all, without saying why."""
        for name in ("shorter_side", "jpeg_quality", "max_pixels", "num_proc", "io_threads", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.jpeg_quality > 100:
            raise ValueError(f"--jpeg_quality must be <= 100, got {self.jpeg_quality}")


def hosts(args: OutputArguments) -> tuple[int, int]:
    """(num_hosts, host_index) from the arguments, SageMaker's env, or a Processing job's resourceconfig.json."""
    if args.num_hosts is not None:
        return args.num_hosts, args.host_index or 0
    if "SM_HOSTS" in os.environ and "SM_CURRENT_HOST" in os.environ:
        names = sorted(json.loads(os.environ["SM_HOSTS"]))
        return len(names), names.index(os.environ["SM_CURRENT_HOST"])
    config = Path(os.environ.get("PROCESSING_RESOURCE_CONFIG", "/opt/ml/config/resourceconfig.json"))  # or a stand-in
    if config.is_file():
        doc = json.loads(config.read_text())
        names = sorted(doc["hosts"])
        return len(names), names.index(doc["current_host"])
    return 1, 0


def options_of(source: SourceArguments, selection: SelectionArguments, out: OutputArguments) -> dict:
    """The settings that determine the dataset: a resumed or re-run build must match them exactly."""
    return {
        "source": source.source.rstrip("/"), **{k: v for k, v in asdict(selection).items()},
        "shorter_side": None if out.keep_original else out.shorter_side, "jpeg_quality": out.jpeg_quality,
        "max_pixels": out.max_pixels, "chunk_size": out.chunk_size,
    }


def selected(stream: Iterator[Candidate], subset: set[str] | None, stats: Counter) -> Iterator[Candidate]:
    """Candidates in the subset (all when None); counts the others and notes whether folders gave splits."""
    for candidate in stream:
        if subset is None or candidate.image_id in subset:
            stats["folder_splits"] |= candidate.folder_split is not None
            yield candidate
        else:
            stats[abid.NOT_IN_SUBSET] += 1


def is_synthetic(store: Store) -> bool:
    """Synthetic buckets carry a ``synthetic.json`` at their root (written by ``data.synthetic``)."""
    try:
        store.reader()("synthetic.json")
        return True
    except Exception:  # noqa: BLE001 - absent, whatever the store says about it
        return False


def build(source: SourceArguments, selection: SelectionArguments, out: OutputArguments) -> dict:
    """Run the mode the arguments ask for; returns its report (the build report, or the manifest of a host's shards)."""
    check_arguments(source, selection)
    if out.shards_only:
        return build_shards(source, selection, out)
    if out.assemble_from:
        return assemble_hosts(source, selection, out)
    return build_dataset(source, selection, out)


def check_arguments(source: SourceArguments, selection: SelectionArguments) -> None:
    """Refuse options that cannot describe a dataset, before anything is read or written."""
    if selection.min_count < 0 or (0 <= selection.max_count < selection.min_count):
        raise UserError(f"invalid count range {selection.min_count}..{selection.max_count}")
    if len(selection.split_ratios) != 3 or min(selection.split_ratios) < 0 or sum(selection.split_ratios) <= 0:
        raise UserError("--split_ratios needs three non-negative fractions (train validation test)")
    if storage.is_remote(source.source):
        try:
            s3.parse_s3_uri(source.source)
        except ValueError as error:
            raise UserError(str(error)) from None


def build_dataset(source: SourceArguments, selection: SelectionArguments, out: OutputArguments) -> dict:
    """One machine: write (or resume) every chunk's shards, then assemble them into the dataset."""
    output = Path(out.output)
    options = options_of(source, selection, out)
    report_file = output / "build_report.json"
    if not out.overwrite and report_file.is_file():
        previous = json.loads(report_file.read_text())
        if previous.get("options") != options:
            raise UserError(f"{output} holds a dataset built with other options; use --overwrite or another --output")
        logger.info("dataset already built at %s (use --overwrite to rebuild)", output)
        if out.push_to_hub:
            push(output, out.push_to_hub, out.private, out.config_name)
        return previous
    work_dir = fresh_work_dir(Path(out.work_dir or f"{str(output).rstrip('/')}.work"), out.overwrite)
    started = time.time()
    store = store_of(source)
    manifest, processed = write_shards(store, selection, out, work_dir, options)
    return finish(source, selection, out, work_dir, manifest, Throughput(started, processed), is_synthetic(store))


def build_shards(source: SourceArguments, selection: SelectionArguments, out: OutputArguments) -> dict:
    """One host of several: write this host's share of the chunks to ``--output``; another step assembles them."""
    work_dir = fresh_work_dir(Path(out.output), out.overwrite)
    manifest, _ = write_shards(store_of(source), selection, out, work_dir, options_of(source, selection, out))
    num_hosts, host_index = hosts(out)
    logger.info("wrote shards for host %d of %d to %s", host_index + 1, num_hosts, work_dir)
    return manifest


def assemble_hosts(source: SourceArguments, selection: SelectionArguments, out: OutputArguments) -> dict:
    """After a multi-host build: gather the hosts' shards (folders or S3 prefixes) and assemble the dataset."""
    output = Path(out.output)
    work_dir = fresh_work_dir(Path(out.work_dir or f"{str(output).rstrip('/')}.work"), out.overwrite)
    started = time.time()
    fetch_shards(out.assemble_from, work_dir)
    manifest = json.loads((work_dir / "manifest.json").read_text())
    if manifest["options"] != options_of(source, selection, out):
        raise UserError("the shards were built with other options than these arguments")
    return finish(source, selection, out, work_dir, manifest, Throughput(started, 0), synthetic=False)


def fresh_work_dir(work_dir: Path, overwrite: bool) -> Path:
    if overwrite and work_dir.exists():
        shutil.rmtree(work_dir)
    return work_dir


def store_of(source: SourceArguments) -> Store:
    return Store(source.source, source.endpoint_url, source.unsigned or None)


def selected_ids(selection: SelectionArguments) -> tuple[dict[str, frozenset[str]] | None, set[str] | None]:
    """(ids per split from --split_files, or None; the ids to keep, or None for all)."""
    try:
        split_lists = {k: frozenset(v) for k, v in parse_split_files(selection.split_files).items()} or None
        subset = load_id_list(selection.subset) if selection.subset else None
    except ValueError as error:
        raise UserError(str(error)) from None
    if split_lists:
        listed = set().union(*split_lists.values())
        if subset is None:
            subset = listed
        else:
            subset &= listed
    return split_lists, subset


def write_shards(store: Store, selection: SelectionArguments, out: OutputArguments, work_dir: Path,
                 options: dict) -> tuple[dict, int]:
    """Write (or resume) this host's chunks into ``work_dir``; returns (the manifest, bins processed now)."""
    split_lists, subset = selected_ids(selection)
    manifest_file = work_dir / "manifest.json"
    if manifest_file.is_file() and json.loads(manifest_file.read_text())["options"] != options:
        raise UserError(f"{work_dir} holds shards of a build with other options; use --overwrite or another "
                        f"--work_dir")
    work_dir.mkdir(parents=True, exist_ok=True)
    labels = LabelSpace(selection.min_count, selection.max_count, selection.overflow_bucket)
    shorter_side = None if out.keep_original else out.shorter_side
    settings = ChunkSettings(store, labels, tuple(selection.split_ratios), split_lists, shorter_side, out.max_pixels,
                             out.jpeg_quality, out.io_threads)
    stats: Counter = Counter()
    stream = selected(candidates(store), subset, stats)
    if selection.limit is not None:
        stream = islice(stream, selection.limit)
    try:
        total, processed = process_chunks(settings, work_dir, stream, out.chunk_size, out.num_proc, hosts(out))
    except (FileNotFoundError, PermissionError) as error:
        raise UserError(str(error)) from None
    if total == 0:
        raise UserError(f"no bins found at {store.root}")
    manifest = {"options": options, "total_chunks": total, "folder_splits": bool(stats.pop("folder_splits", 0)),
                "excluded": dict(stats)}
    manifest_file.write_text(json.dumps(manifest, indent=1))
    return manifest, processed


@dataclass(frozen=True)
class Throughput:
    started: float  # time.time() when reading began
    processed: int  # bins read and encoded by this run (0 when it only assembled)


def finish(source: SourceArguments, selection: SelectionArguments, out: OutputArguments, work_dir: Path,
           manifest: dict, throughput: Throughput, synthetic: bool) -> dict:
    """Assemble the shards into the dataset at ``--output`` with its card, histogram and report; push if asked."""
    output = Path(out.output)
    labels = LabelSpace(selection.min_count, selection.max_count, selection.overflow_bucket)
    names, totals = assemble(work_dir, output, labels, wanted_splits(selection))
    elapsed = time.time() - throughput.started
    report = {
        "source": source.source, "command": "python -m data.build " + shlex.join(sys.argv[1:]),
        "options": options_of(source, selection, out), **totals, "classes": names, "elapsed_s": round(elapsed, 2),
        "images_per_s": round(throughput.processed / elapsed, 1) if throughput.processed else None,
        "split_rule": split_rule(selection, manifest), "image_rule": image_rule(out),
    }
    card.plot_histogram(report["per_class"], names, output / "class_histogram.png")
    (output / "README.md").write_text(card.render(report, names, "class_histogram.png", synthetic))
    (output / "build_report.json").write_text(json.dumps(report, indent=1))
    if not out.keep_work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    if out.push_to_hub:
        push(output, out.push_to_hub, out.private, out.config_name)
    return report


def wanted_splits(selection: SelectionArguments) -> list[str]:
    """The splits the dataset has: those --split_files names (in the usual order), else all three."""
    if not selection.split_files:
        return list(SPLITS)
    named = {entry.split("=")[0] for entry in selection.split_files}
    return [split for split in SPLITS if split in named]


def split_rule(selection: SelectionArguments, manifest: dict) -> str:
    if selection.split_files:
        return f"from lists ({', '.join(selection.split_files)})"
    if manifest.get("folder_splits"):
        return "from the source's <split>/<count>/ folders"
    return f"sha256 of the image id, train/validation/test ratios {selection.split_ratios}"


def image_rule(out: OutputArguments) -> str:
    if out.keep_original:
        return "original JPEG bytes"
    return f"shorter side resized to {out.shorter_side} px, JPEG quality {out.jpeg_quality}"


def summary(report: dict) -> str:
    lines = [f"kept {report['kept']} of {report['listed']} listed bins "
             f"({', '.join(f'{s}: {n}' for s, n in report['per_split'].items())})"]
    for split, counts in report["per_class"].items():
        lines.append(f"  {split:<10} " + "  ".join(f"{k}:{v}" for k, v in counts.items()))
    if report["dropped"]:
        lines.append("dropped: " + ", ".join(f"{k}={v}" for k, v in sorted(report["dropped"].items())))
    if report["excluded"]:
        lines.append("excluded: " + ", ".join(f"{k}={v}" for k, v in sorted(report["excluded"].items())))
    if report.get("images_per_s"):
        lines.append(f"{report['images_per_s']} images/s, {report['elapsed_s']} s")
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = HfArgumentParser((SourceArguments, SelectionArguments, OutputArguments))
    source, selection, out = parse(parser, argv)
    report = build(source, selection, out)
    if "kept" in report:
        print(summary(report))
        print(f"dataset: {out.output}  (datasets.load_from_disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
