"""The dataset card (README.md) and class histogram that travel with every built dataset, locally and on the Hub."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from core.labels import is_overflow

LICENSE_NOTE = (
    "The images and metadata come from the [Amazon Bin Image Dataset]"
    "(https://registry.opendata.aws/amazon-bin-imagery/) (`s3://aft-vbi-pds`), © Amazon.com, Inc., licensed under "
    "the [Creative Commons Attribution-NonCommercial-"
    "ShareAlike 3.0 United States licence](https://creativecommons.org/licenses/by-nc-sa/3.0/us/) (CC BY-NC-SA 3.0 "
    "US). This derived dataset (resized images, count labels) is shared under the same licence; non-commercial use "
    "only, with attribution."
)
SYNTHETIC_NOTE = "Synthetic bins rendered by `python -m data.synthetic` in the ABID layout and metadata schema."


def plot_histogram(per_split: dict[str, dict[str, int]], names: list[str], path: Path) -> Path:
    """Grouped bar chart: images per count class, one bar per split."""
    # A bare Figure (no pyplot): nothing opens a window and a notebook's backend stays as it is.
    fig = Figure(figsize=(max(6.0, 0.5 * len(names) + 3), 3.6))
    ax = fig.add_subplot()
    splits = [s for s in per_split if sum(per_split[s].values())]
    width = 0.8 / max(1, len(splits))
    for i, split in enumerate(splits):
        values = [per_split[split].get(name, 0) for name in names]
        ax.bar([x + (i - (len(splits) - 1) / 2) * width for x in range(len(names))], values, width, label=split)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel("items in bin (class)")
    ax.set_ylabel("images")
    ax.set_title("Class histogram")
    if splits:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket for a dataset of ``rows`` rows."""
    for limit, category in ((1000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if rows < limit:
            return category
    return "100K<n<1M"


def class_table(per_split: dict[str, dict[str, int]], names: list[str]) -> str:
    """Markdown table of images per class (rows) and split (columns), with totals."""
    lines = [f"| class | {' | '.join(per_split)} | total |", f"|---|{'---|' * len(per_split)}---|"]
    for name in names:
        counts = [per_split[split].get(name, 0) for split in per_split]
        lines.append(f"| {name} | {' | '.join(map(str, counts))} | {sum(counts)} |")
    totals = [sum(per_split[split].values()) for split in per_split]
    lines.append(f"| **total** | {' | '.join(map(str, totals))} | {sum(totals)} |")
    return "\n".join(lines)


def render(report: dict, names: list[str], histogram: str, synthetic: bool) -> str:
    """Markdown card with Hub metadata: what the data is, how it was built, sizes, classes and licence."""
    per_split = report["per_class"]
    total = sum(sum(c.values()) for c in per_split.values())
    dropped = "\n".join(f"| {reason} | {n} |" for reason, n in sorted(report["dropped"].items())) or "| none | 0 |"
    excluded = ", ".join(f"{reason}: {n}" for reason, n in sorted(report["excluded"].items())) or "none"
    overflow = "; the last class means that many or more" if is_overflow(names[-1]) else ""
    return f"""---
license: cc-by-nc-sa-3.0
pretty_name: ABID bin counts
task_categories:
- image-classification
tags:
- object-counting
- inventory
- amazon-bin-image-dataset
size_categories:
- {size_category(total)}
---

# ABID bin counts

Images of warehouse bins (front view of a fabric pod bin) labelled with the number of items they hold, for training
item counters. Each row: `image` (JPEG), `label` (class name = item count{overflow}), `image_id` (the ABID id, a
string: `121` and `00121` are different bins), `expected_quantity` (the count from the metadata), `num_asins`
(distinct products; -1 when unknown), `original_width` / `original_height`.

{SYNTHETIC_NOTE if synthetic else "Built from the Amazon Bin Image Dataset."}

## How it was built

- Source: `{report["source"]}`
- Command: `{report["command"]}`
- Labels: `EXPECTED_QUANTITY` from each bin's metadata; bins with missing or unreadable metadata are dropped, never
  labelled 0. Classes: {", ".join(names)}.
- Splits: {report["split_rule"]}.
- Images: {report["image_rule"]}.

## Splits and classes

![class histogram]({histogram})

{class_table(per_split, names)}

## Records left out

Bad records (skipped and counted; each is listed in `dropped.jsonl`):

| reason | images |
|---|---|
{dropped}

Excluded by the selection: {excluded}.

## Licence

{LICENSE_NOTE}
"""
