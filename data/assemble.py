"""Turn a build's finished chunks into the dataset: merge their shards in chunk order into a DatasetDict, count what
was kept, dropped and excluded, and publish it to the Hub with its card.

The same step serves a one-machine build and a multi-host one (``--assemble_from`` the hosts' shard folders or S3
prefixes): shards are named by chunk, so the result is identical however the chunks were shared out.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

from core import storage
from core.cli import UserError
from core.labels import LabelSpace
from data import abid
from data.shards import SHARD_FEATURES, report_path


def assemble(work_dir: Path, output: Path, labels: LabelSpace, splits: list[str]) -> tuple[list[str], dict]:
    """Merge every chunk's shards, in chunk order, into a DatasetDict at ``output``; returns (names, report totals)."""
    manifest = json.loads((work_dir / "manifest.json").read_text())
    reports = chunk_reports(work_dir, manifest["total_chunks"])
    largest = max((int(label) for r in reports for kept in r["kept"].values() for label in kept), default=0)
    names = labels.names(largest)
    tmp = output.with_name(f".{output.name}.tmp")
    save_splits(work_dir, tmp, names, splits)
    with open(tmp / "dropped.jsonl", "w") as f:
        for r in reports:
            for image_id, reason, detail in r["dropped"]:
                f.write(json.dumps({"image_id": image_id, "reason": reason, "detail": detail}) + "\n")
    if output.exists():
        shutil.rmtree(output)
    os.replace(tmp, output)
    return names, totals(reports, manifest, names, splits)


def chunk_reports(work_dir: Path, total_chunks: int) -> list[dict]:
    """Every chunk's report, in chunk order; refuses a build with chunks missing or with nothing kept."""
    reports, missing = [], []
    for index in range(total_chunks):
        path = report_path(work_dir, index)
        if path.is_file():
            reports.append(json.loads(path.read_text()))
        else:
            missing.append(index)
    if missing:
        raise UserError(f"{len(missing)} of {total_chunks} chunks are not built yet "
                        f"(first missing: {missing[0]}); run the remaining hosts or resume the build")
    if not any(n for r in reports for kept in r["kept"].values() for n in kept.values()):
        reasons = Counter(reason for r in reports for _, reason, _ in r["dropped"])
        why = ", ".join(f"{k}: {v}" for k, v in reasons.items()) or "all excluded by the selection"
        message = f"no bins kept out of {sum(r['candidates'] for r in reports)} listed ({why})"
        example = next((f"{i}: {detail or reason}" for r in reports for i, reason, detail in r["dropped"]), "")
        if example:
            message += f", e.g. {example}"
        raise UserError(message)
    return reports


def save_splits(work_dir: Path, target: Path, names: list[str], splits: list[str]) -> None:
    """The shards of each split as one DatasetDict saved at ``target`` (an empty split too, as one empty shard)."""
    from datasets import ClassLabel, Dataset, DatasetDict

    features = SHARD_FEATURES.copy()
    features["label"] = ClassLabel(names=names)
    cache = work_dir / "cache"
    datasets = {}
    for split in splits:
        files = sorted(str(p) for p in (work_dir / "shards").glob(f"*-{split}.parquet"))
        if files:
            datasets[split] = Dataset.from_parquet(files, features=features, cache_dir=str(cache), split=split)
        else:
            datasets[split] = Dataset.from_dict({k: [] for k in features}, features=features)
    shutil.rmtree(target, ignore_errors=True)
    # An empty split saved as zero shards cannot be loaded back: give it one.
    one_shard = {split: 1 for split, dataset in datasets.items() if not len(dataset)}
    DatasetDict(datasets).save_to_disk(str(target), num_shards=one_shard or None)
    shutil.rmtree(cache, ignore_errors=True)


def totals(reports: list[dict], manifest: dict, names: list[str], splits: list[str]) -> dict:
    """What the build report counts: listed, kept (per split and class), dropped and excluded bins."""
    per_class = {}
    for split in splits:
        counts = Counter()
        for r in reports:
            counts.update({names[int(k)]: v for k, v in r["kept"].get(split, {}).items()})
        per_class[split] = {name: counts.get(name, 0) for name in names}
    dropped = Counter(reason for r in reports for _, reason, _ in r["dropped"])
    excluded = Counter()
    for r in reports:
        excluded.update(r["excluded"])
    excluded.update(manifest.get("excluded", {}))
    return {"listed": sum(r["candidates"] for r in reports) + excluded.get(abid.NOT_IN_SUBSET, 0),
            "kept": sum(sum(c.values()) for c in per_class.values()),
            "per_split": {s: sum(per_class[s].values()) for s in splits}, "per_class": per_class,
            "dropped": dict(dropped), "excluded": dict(excluded)}


def fetch_shards(sources: list[str], work_dir: Path) -> None:
    """Gather shards written by several hosts (folders or S3 prefixes) into one work dir."""
    for source in sources:
        storage.download(source, work_dir)
    if not (work_dir / "manifest.json").is_file():
        raise UserError(f"no manifest.json among the shards in {', '.join(sources)}")


def push(output: Path, repo_id: str, private: bool, config_name: str = "default") -> None:
    """Publish the dataset, then its card and histogram, so ``load_dataset(repo_id)`` works; a named configuration
    goes to ``<name>/`` (datasets' own layout) beside the others, ``load_dataset(repo_id, name)``. Never under the
    default configuration's ``data/``: its next push deletes whatever else lies there."""
    from datasets import load_from_disk
    from huggingface_hub import DatasetCard, HfApi

    named = config_name != "default"
    load_from_disk(str(output)).push_to_hub(repo_id, private=private, config_name=config_name)
    hub_card = DatasetCard.load(repo_id, repo_type="dataset")
    ours = DatasetCard((output / "README.md").read_text())
    for key in ("dataset_info", "configs"):  # what load_dataset reads from the card the Hub generated
        if key in hub_card.data:
            ours.data[key] = hub_card.data[key]
    api = HfApi()
    histogram = f"class_histogram_{config_name}.png" if named else "class_histogram.png"
    ours.text = ours.text.replace("class_histogram.png", histogram)
    api.upload_file(path_or_fileobj=str(output / "class_histogram.png"), path_in_repo=histogram,
                    repo_id=repo_id, repo_type="dataset")
    ours.push_to_hub(repo_id, repo_type="dataset")
