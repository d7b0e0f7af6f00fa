"""The inventory audit: how verify mode would do on a split whose recorded quantities are partly wrong.

    python -m train.audit --model DIR --dataset DIR --split test [--discrepancy_rate 0.5] [--seed 0]

Every bin of the split gets a recorded quantity: its true count, or (at ``discrepancy_rate``, seeded) a count one or
two items away, inside the label range. Verify mode judges each record by ``core/verify.py``'s rule (``match``,
``mismatch`` or ``uncertain`` from P(recorded) and a threshold pair). For a grid of threshold
pairs the audit reports the false alarms (share of correct records flagged ``mismatch``: recounts for nothing), the
caught discrepancies (share of wrong records flagged ``mismatch``, for +-1 and +-2 separately), the wrong records
waved through as ``match`` and the share left ``uncertain``, and plots it (``audit.png``).

``choose_thresholds`` picks a model's default pair on the validation split, from every bin with its true count and
with every wrong count one or two away (no sampling noise): the largest mismatch threshold that keeps the false alarms
on *new* bins at or under the target (default 5%), and the smallest match threshold above it that calls at most that
share of the wrong records ``match``. "On new bins" is the split-conformal bound: a threshold under the k-th smallest of
n validation scores catches a new, exchangeable one with probability at most k / (n + 1), so the rule allows one
validation record fewer than the share alone would (``allowed``). On a 50-bin validation split the share alone would
allow 2 false alarms, whose expected rate on new bins is 3/51 = 5.9%; the bound allows 1, 2/51 = 3.9%. ``train.run``
saves them as ``verify.json`` in the model folder, which ships in ``model.tar.gz``; the handler uses them unless the
endpoint's environment or the request overrides them.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from core import verify as rule
from core.labels import class_of, counts_of
from train.args import UsageError

logger = logging.getLogger("train.audit")
GRID_MATCH = (0.4, 0.5, 0.6, 0.7)
GRID_MISMATCH = (0.05, 0.1, 0.2, 0.3)
CANDIDATES = np.round(np.linspace(0, 1, 201), 3)  # thresholds are chosen on a 0.005 grid


def record_offsets(labels: np.ndarray, names: list[str], rate: float, seed: int) -> np.ndarray:
    """Recorded minus true count per bin: 0 for a correct record; for a wrong one (probability ``rate``) +-1 or +-2
    (each size equally likely, then a sign that stays inside the label range and changes the class)."""
    counts = counts_of(names)
    rng = np.random.default_rng(seed)
    offsets = np.zeros(len(labels), dtype=int)
    for i, label in enumerate(labels):
        if rng.random() >= rate:
            continue
        for size in rng.permutation([1, 2]):
            signs = [s for s in (-1, 1) if _wrong_class(counts[label] + s * size, label, names) is not None]
            if signs:
                offsets[i] = int(size * rng.choice(signs))
                break
    return offsets


def _wrong_class(quantity: int, label: int, names: list[str]) -> int | None:
    """The class of a recorded quantity inside the label range, when it is not the true class."""
    counts = counts_of(names)
    if not min(counts) <= quantity <= max(counts):
        return None
    index = class_of(quantity, names)
    return None if index is None or index == label else index


def recorded_probability(probabilities: np.ndarray, labels: np.ndarray, offsets: np.ndarray,
                         names: list[str]) -> np.ndarray:
    """P(the recorded quantity) per bin: what verify mode compares with its thresholds."""
    counts = counts_of(names)
    classes = [class_of(counts[label] + offset, names) for label, offset in zip(labels, offsets)]
    return probabilities[np.arange(len(labels)), classes]


def shares(p: np.ndarray, offsets: np.ndarray, match: float, mismatch: float) -> dict[str, float | None]:
    """The audit's figures at one threshold pair (None where the split has no record of that kind)."""
    passed, flagged = rule.calls(p, match, mismatch)
    correct, near, far = offsets == 0, np.abs(offsets) == 1, np.abs(offsets) == 2
    wrong = ~correct

    def share(mask: np.ndarray, of: np.ndarray) -> float | None:
        return float(mask[of].mean()) if of.any() else None

    return {"match": match, "mismatch": mismatch, "false_alarm": share(flagged, correct),
            "caught_1": share(flagged, near), "caught_2": share(flagged, far), "caught": share(flagged, wrong),
            "wrong_called_match": share(passed, wrong), "uncertain": float((~flagged & ~passed).mean()),
            "records": int(len(p)), "wrong_records": int(wrong.sum())}


def grid(p: np.ndarray, offsets: np.ndarray, extra: list[tuple[float, float]] = ()) -> list[dict]:
    pairs = [(m, x) for m in GRID_MATCH for x in GRID_MISMATCH if x < m]
    pairs += [pair for pair in extra if pair not in pairs]
    return [shares(p, offsets, match, mismatch) for match, mismatch in pairs]


def exhaustive(probabilities: np.ndarray, labels: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every bin recorded correctly, and recorded with every wrong count one or two away: (P(recorded), offsets)."""
    rows, offsets = [], []
    for offset in (0, -2, -1, 1, 2):
        for i, label in enumerate(labels):
            if offset == 0 or _wrong_class(counts_of(names)[label] + offset, label, names) is not None:
                rows.append(i)
                offsets.append(offset)
    rows, offsets = np.asarray(rows), np.asarray(offsets)
    return recorded_probability(probabilities[rows], labels[rows], offsets, names), offsets


def choose_thresholds(probabilities: np.ndarray, labels: np.ndarray, names: list[str], target: float) -> dict:
    """The verify thresholds for a target false-alarm share, chosen on this split (see the module docstring)."""
    p, offsets = exhaustive(probabilities, labels, names)
    correct, wrong = p[offsets == 0], p[offsets != 0]
    alarms, passes = allowed(correct.size, target), allowed(wrong.size, target)
    if alarms < 0:
        logger.warning("%d validation bins cannot bound false alarms at %g: verify mode will flag no record; "
                       "choose thresholds on a larger split (python -m train.audit --save_thresholds true)",
                       correct.size, target)
    mismatch = max((t for t in CANDIDATES[:-1] if np.sum(correct <= t) <= alarms), default=0.0)
    above = [t for t in CANDIDATES if t > mismatch and (not wrong.size or np.sum(wrong >= t) <= passes)]
    match = min(above, default=1.0)
    return {"match": float(match), "mismatch": float(mismatch), "target_false_alarm": target,
            "chosen_on": {"images": int(len(labels)), **shares(p, offsets, match, mismatch)}}


def allowed(n: int, target: float) -> int:
    """How many of ``n`` validation records a threshold may misjudge so that a new record is misjudged with
    probability at most ``target``: k - 1 for k = floor(target * (n + 1)) (the module docstring says why); -1 where
    no threshold can promise it (fewer than 1 / target - 1 records)."""
    return math.floor(target * (n + 1) + 1e-9) - 1


def plot_audit(p: np.ndarray, offsets: np.ndarray, chosen: dict, path: str | Path, title: str) -> Path:
    """Left: caught share against false-alarm share as the mismatch threshold sweeps 0..1; right: the verdicts of
    each kind of record at the chosen thresholds."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    sweep = [shares(p, offsets, 1.0, t) for t in CANDIDATES[:-1]]
    for key, label in (("caught_1", "wrong by 1"), ("caught_2", "wrong by 2")):
        if sweep[0][key] is not None:
            left.plot([s["false_alarm"] for s in sweep], [s[key] for s in sweep], label=f"caught, {label}")
    at = shares(p, offsets, chosen["match"], chosen["mismatch"])
    left.scatter([at["false_alarm"]] * 2, [at["caught_1"] or 0, at["caught_2"] or 0], color="black", zorder=3,
                 label=f"chosen mismatch threshold {chosen['mismatch']:.3f}")
    left.axvline(chosen.get("target_false_alarm", 0.05), linestyle="--", color="grey", label="target false alarms")
    left.set_xlabel("false alarms (correct records flagged mismatch)")
    left.set_ylabel("share of wrong records flagged mismatch")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.legend(loc="lower right")
    kinds = [("correct", offsets == 0), ("wrong by 1", np.abs(offsets) == 1), ("wrong by 2", np.abs(offsets) == 2)]
    bottom = np.zeros(len(kinds))
    for verdict, colour in (("match", "tab:green"), ("uncertain", "tab:grey"), ("mismatch", "tab:red")):
        values = np.array([np.mean(verdicts(p[mask], chosen) == verdict) if mask.any() else 0 for _, mask in kinds])
        right.bar([k for k, _ in kinds], values, bottom=bottom, color=colour, label=verdict)
        bottom += values
    right.set_ylabel("share of records")
    right.set_title(f"verdicts at match >= {chosen['match']:.3f}, mismatch <= {chosen['mismatch']:.3f}")
    right.legend(loc="upper right")
    figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def verdicts(p: np.ndarray, thresholds: dict) -> np.ndarray:
    """Verify mode's verdict per record, by the handler's rule."""
    passed, flagged = rule.calls(p, thresholds["match"], thresholds["mismatch"])
    return np.where(passed, "match", np.where(flagged, "mismatch", "uncertain"))


def audit(probabilities: np.ndarray, labels: np.ndarray, names: list[str], thresholds: dict, rate: float, seed: int,
          plot: str | Path | None = None, title: str = "Inventory audit") -> dict:
    """The audit of one split at the given thresholds, with the grid around them (and the plot if asked)."""
    offsets = record_offsets(labels, names, rate, seed)
    p = recorded_probability(probabilities, labels, offsets, names)
    pairs = [(thresholds["match"], thresholds["mismatch"]), (rule.BUILT_IN["match"], rule.BUILT_IN["mismatch"])]
    if plot is not None:
        plot_audit(p, offsets, thresholds, plot, title)
    return {"discrepancy_rate": rate, "seed": seed, "at_thresholds": shares(p, offsets, *pairs[0]),
            "at_built_in_defaults": shares(p, offsets, *pairs[1]), "grid": grid(p, offsets, pairs)}


def table(report: dict) -> str:
    """The audit as Markdown: the chosen pair, the handler's built-in pair, then the grid."""
    def percent(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    lines = ["| match >= | mismatch <= | false alarms (%) | caught ±1 (%) | caught ±2 (%) | wrong called match (%) "
             "| uncertain (%) |", "|---|---|---|---|---|---|---|"]
    rows = [report["at_thresholds"], report["at_built_in_defaults"], *report["grid"]]
    seen = set()
    for row in rows:
        if (row["match"], row["mismatch"]) in seen:
            continue
        seen.add((row["match"], row["mismatch"]))
        lines.append(f"| {row['match']:.3g} | {row['mismatch']:.3g} | {percent(row['false_alarm'])} | "
                     f"{percent(row['caught_1'])} | {percent(row['caught_2'])} | "
                     f"{percent(row['wrong_called_match'])} | {percent(row['uncertain'])} |")
    return "\n".join(lines) + "\n"


def describe(thresholds: dict, report: dict, split: str) -> str:
    """results.md's and the model card's paragraph on the audit."""
    at = report["at_thresholds"]
    source = "not chosen on data"
    if "chosen_on" in thresholds:
        source = (f"saved in `{rule.VERIFY_FILE}`, chosen on the validation split for at most "
                  f"{100 * thresholds['target_false_alarm']:.0f}% false alarms on new bins")
    return (f"Verify thresholds ({source}): match when P(recorded) >= "
            f"{thresholds['match']:.3f}, mismatch when P(recorded) <= {thresholds['mismatch']:.3f}. Audit of the "
            f"{split} split with {100 * report['discrepancy_rate']:.0f}% of the records wrong by ±1 or ±2 (seed "
            f"{report['seed']}): {percent_text(at['false_alarm'])} of the correct records flagged mismatch, "
            f"{percent_text(at['caught_1'])} of the ±1 and {percent_text(at['caught_2'])} of the ±2 discrepancies "
            f"caught, {percent_text(at['uncertain'])} of all records left uncertain. The first row below is the saved "
            f"pair, the second the handler's built-in 0.5 / 0.1.\n\n{table(report)}")


def percent_text(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


@dataclass
class AuditArguments:
    model: str = field(metadata={"help": "A model folder written by train.run."})
    dataset: str = field(metadata={"help": "A dataset folder written by data.build."})
    split: str = field(default="test", metadata={"help": "The labelled split to audit."})
    discrepancy_rate: float = field(default=0.5, metadata={"help": "Share of records made wrong by ±1 or ±2."})
    seed: int = field(default=0, metadata={"help": "Seed of the wrong records."})
    match_threshold: float | None = field(default=None, metadata={
        "help": "Audit at this match threshold (default: the model's verify.json, else 0.5)."})
    mismatch_threshold: float | None = field(default=None, metadata={
        "help": "Audit at this mismatch threshold (default: the model's verify.json, else 0.1)."})
    save_thresholds: bool = field(default=False, metadata={
        "help": "Choose the thresholds on this split for target_false_alarm and save them as the model's verify.json."})
    target_false_alarm: float = field(default=0.05, metadata={"help": "False-alarm share for --save_thresholds."})
    output: str | None = field(default=None, metadata={
        "help": "Folder for audit.json, audit.md and audit.png (default: <model>/audit-<split>)."})
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass."})


def load_split(dataset: str, split: str, names: list[str]):
    """The split, refused unless it is labelled with exactly the model's classes."""
    from datasets import ClassLabel, DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(dataset)
    except FileNotFoundError:
        raise UsageError(f"{dataset} is not a dataset written by data.build") from None
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise UsageError(f"{dataset} has no {split!r} split (it has: {', '.join(loaded)})")
        loaded = loaded[split]
    feature = loaded.features.get("label")
    if not isinstance(feature, ClassLabel) or "image" not in loaded.features:
        raise UsageError(f"the {split!r} split has no labels (an 'image' and a ClassLabel 'label' column)")
    if list(feature.names) != names:
        raise UsageError(f"the {split!r} split has classes {feature.names}, the model has {names}")
    labels = np.asarray(loaded["label"])
    if not len(labels) or (labels < 0).any():
        raise UsageError(f"the {split!r} split has unlabelled images (label -1) or none at all")
    return loaded, labels


def predict(model_dir: str, split, batch_size: int) -> np.ndarray:
    """The saved model's probabilities for every image of the split, through its saved image processor."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    out = []
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            images = [image.convert("RGB") for image in split[start:start + batch_size]["image"]]
            logits = model(**processor(images=images, return_tensors="pt")).logits
            out.append(logits.float().softmax(-1).numpy())
    return np.concatenate(out)


def thresholds_of(args: AuditArguments) -> dict:
    try:
        thresholds = rule.saved(args.model)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.match_threshold is not None:
        thresholds["match"] = args.match_threshold
    if args.mismatch_threshold is not None:
        thresholds["mismatch"] = args.mismatch_threshold
    thresholds.setdefault("target_false_alarm", args.target_false_alarm)
    try:
        rule.check(thresholds["match"], thresholds["mismatch"])
    except ValueError as error:
        raise UsageError(str(error)) from None
    return thresholds


def run(args: AuditArguments) -> dict:
    from transformers import AutoConfig

    if not 0 <= args.discrepancy_rate <= 1:
        raise UsageError(f"--discrepancy_rate must be between 0 and 1, got {args.discrepancy_rate}")
    if not 0 < args.target_false_alarm < 1:
        raise UsageError(f"--target_false_alarm must be a share in (0, 1), got {args.target_false_alarm}")
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    try:
        config = AutoConfig.from_pretrained(args.model)
    except OSError:
        raise UsageError(f"{args.model} is not a model folder (no config.json)") from None
    names = [config.id2label[i] for i in range(len(config.id2label))]
    split, labels = load_split(args.dataset, args.split, names)
    probabilities = predict(args.model, split, args.batch_size)
    if args.save_thresholds:
        logger.info("saved verify thresholds to %s", rule.save(
            args.model, choose_thresholds(probabilities, labels, names, args.target_false_alarm)))
    thresholds = thresholds_of(args)
    output = Path(args.output or Path(args.model) / f"audit-{args.split}")
    output.mkdir(parents=True, exist_ok=True)
    report = audit(probabilities, labels, names, thresholds, args.discrepancy_rate, args.seed,
                   output / "audit.png", f"Inventory audit, {args.split} split ({len(labels)} bins)")
    (output / "audit.json").write_text(json.dumps({"thresholds": thresholds, **report}, indent=1))
    (output / "audit.md").write_text(f"# Inventory audit\n\n{describe(thresholds, report, args.split)}")
    print(describe(thresholds, report, args.split))
    print(f"written: {output}/audit.json, audit.md, audit.png")
    return report


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    from core.cli import parse, run_cli

    def start(arguments: list[str] | None) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        (args,) = parse(HfArgumentParser(AuditArguments), arguments)
        run(args)
        return 0

    return run_cli(start, argv)


if __name__ == "__main__":
    sys.exit(main())
