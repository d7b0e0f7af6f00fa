"""What helps a from-scratch counter on real ABID bins: k-fold cross-validation on ../shared/abid-real.

    python -m bench.real_bins [--folds 3] [--seeds 0 1] [--variants ce-64 ordinal-64 ...] [--threads 1]
    python -m bench.real_bins --report_only    # the table from the runs saved so far
    python -m bench.real_bins --export runs/real  # the pooled real bins as one data.build-style DatasetDict

The 1-5-item bins of the real set (962 of its 1,050 images) are built with the project's own ``python -m data.build``
from both of its layouts (bucket and count folders) and pooled; every variant is trained on the same stratified folds
with the same seeds, and scored on the held-out fold. Each run also holds out 15% of its training part as a
validation split, which fits the temperature (train/calibration.py) and picks the audit's thresholds
(train/audit.py), exactly as ``train.run`` does at the end of training.

Training follows ``train.run``'s path on a lean loop (no Trainer, so that dozens of runs fit on a shared 2-core CPU):
the model is an AutoModelForImageClassification built from a config, the augmentation is train/transforms.py's, the
images are resized to ``resolution`` x ``resolution`` and normalised like the recipe's image processor, and the loss
is train/objectives.py's ``CountingLoss``. Decoding (argmax, expected count, rounded expected count) and horizontal
flip test-time augmentation are scored from the same saved logits, so they cost nothing extra.

The audit is scored twice: at the thresholds chosen on the run's validation split (what a user gets), and at the
threshold that keeps the held-out fold's own false alarms at 5% (the most any choice of thresholds could catch with
that model). A second table pools each seed's held-out folds (every bin once) for an ECE on three times the bins.

Results are saved after every run (bench/results/real_bins.json) and a restarted bench skips finished runs; the
tables go to real_bins.md and, as a picture (accuracy and expected-count RMSE per variant against the
constants), to real_bins.png.
"""

from __future__ import annotations

import copy
import json
import math
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import AutoConfig, AutoModelForImageClassification, HfArgumentParser, set_seed
from transformers.optimization import get_cosine_schedule_with_warmup

from bench.report import RESULTS, describe, fail, machine, markdown_table
from core import verify as rule
from train import audit, calibration
from train.objectives import CountingLoss
from train.transforms import WORK_MARGIN, Augmentation, shrunk

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "abid-real"
BASE_CONFIG = ROOT / "train" / "configs" / "tiny-resnet"
NAMES = ["1", "2", "3", "4", "5"]
DEFAULT_AUG = {"crop_scale": 0.8, "rotation_degrees": 10.0, "color_jitter": 0.2}
HEAVY_AUG = {"crop_scale": 0.6, "rotation_degrees": 15.0, "color_jitter": 0.4}
HEAVIER_AUG = {"crop_scale": 0.45, "rotation_degrees": 20.0, "color_jitter": 0.5}
BASE = {"resolution": 64, "epochs": 20, "lr": 2e-3, "weight_decay": 0.05, "batch_size": 32, "objective": "ce",
        "augment": DEFAULT_AUG, "width": 1.0, "depths": [1, 1, 2, 1], "view": 1.0, "aspect": 1.0,
        "label_smoothing": 0.0, "mixup": 0.0}
# Every variant differs from BASE in what its name says.
VARIANTS = {
    "ce-64": {},
    "ordinal-64": {"objective": "ordinal"},
    "count-aware-64": {"objective": "count_aware"},
    "no-aug-64": {"augment": None},
    "heavy-aug-64": {"augment": HEAVY_AUG},
    "ce-96": {"resolution": 96},
    "ce-48": {"resolution": 48},
    "ce-64-40ep": {"epochs": 40},
    "ce-64-wide": {"width": 2.0},
    "ce-64-narrow": {"width": 0.5},
    "heavier-aug-64": {"augment": HEAVIER_AUG},
    "ordinal-64-heavy-aug": {"objective": "ordinal", "augment": HEAVY_AUG},
    "heavy-aug-64-40ep": {"augment": HEAVY_AUG, "epochs": 40},
    "heavy-aug-96": {"augment": HEAVY_AUG, "resolution": 96},
    "ordinal-48-heavy-aug": {"objective": "ordinal", "resolution": 48, "augment": HEAVY_AUG},
    "ordinal-48-heavy-aug-narrow": {"objective": "ordinal", "resolution": 48, "augment": HEAVY_AUG, "width": 0.5},
    "heavy-aug-64-wide": {"augment": HEAVY_AUG, "width": 2.0},
    "heavy-aug-64-deep": {"augment": HEAVY_AUG, "depths": [2, 2, 2, 2]},
    "heavy-aug-64-ema": {"augment": HEAVY_AUG, "ema": 0.98},
    "heavy-aug-64-view80": {"augment": HEAVY_AUG, "view": 0.8},
    "heavy-aug-64-view65": {"augment": HEAVY_AUG, "view": 0.65},
    "heavy-aug-64-lr1e-3": {"augment": HEAVY_AUG, "lr": 1e-3},
    "heavy-aug-64-lr4e-3": {"augment": HEAVY_AUG, "lr": 4e-3},
    "heavy-aug-64-lr5e-4": {"augment": HEAVY_AUG, "lr": 5e-4},
    "heavy-aug-64-lr2.5e-4": {"augment": HEAVY_AUG, "lr": 2.5e-4},
    "heavy-aug-64-wd0.2": {"augment": HEAVY_AUG, "weight_decay": 0.2},
    "heavy-aug-64-bs16": {"augment": HEAVY_AUG, "batch_size": 16},
    "heavy-aug-64-vflip": {"augment": HEAVY_AUG | {"vflip": True}},
    "heavy-aug-64-turns": {"augment": HEAVY_AUG | {"quarter_turns": True}},
    "heavy-aug-64-ls0.1": {"augment": HEAVY_AUG, "label_smoothing": 0.1},
    "heavy-aug-64-mixup0.2": {"augment": HEAVY_AUG, "mixup": 0.2},
    "heavy-aug-80x64": {"augment": HEAVY_AUG, "aspect": 1.25},
    "heavy-aug-64-blur": {"augment": HEAVY_AUG | {"blur": 1.5}},
    "heavy-aug-64-gray": {"augment": HEAVY_AUG | {"grayscale": 0.2}},
    # fine-tuning the synthetic pre-trained model (bench.transfer --finetune_variant): the recipe's rate, other losses
    "ordinal-64-heavy-aug-lr5e-4": {"objective": "ordinal", "augment": HEAVY_AUG, "lr": 5e-4},
    "count-aware-64-heavy-aug-lr5e-4": {"objective": "count_aware", "augment": HEAVY_AUG, "lr": 5e-4},
    # ... and other schedules and augmentations at that rate
    "heavy-aug-64-lr5e-4-40ep": {"augment": HEAVY_AUG, "lr": 5e-4, "epochs": 40},
    "heavy-aug-64-lr5e-4-bs16": {"augment": HEAVY_AUG, "lr": 5e-4, "batch_size": 16},
    "heavy-aug-64-lr5e-4-ema": {"augment": HEAVY_AUG, "lr": 5e-4, "ema": 0.98},
    "heavier-aug-64-lr5e-4": {"augment": HEAVIER_AUG, "lr": 5e-4},
}


@dataclass
class BenchArguments:
    real: str = field(default=str(REAL), metadata={"help": "The abid-real folder (bucket/ and folders/ layouts)."})
    folds: int = field(default=3, metadata={"help": "Cross-validation folds."})
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata={"help": "Training seeds per fold."})
    variants: list[str] = field(default_factory=lambda: list(VARIANTS), metadata={"help": "Variants to run, in order."})
    threads: int = field(default=1, metadata={"help": "torch threads (the CPU is usually shared)."})
    output: str = field(default=str(RESULTS / "real_bins.json"), metadata={"help": "Resumable results file."})
    report_only: bool = field(default=False, metadata={"help": "Print the table of the runs saved so far."})
    ensemble: list[str] = field(default_factory=list, metadata={
        "help": "Also score these variants' saved runs averaged per held-out fold (an ensemble of them)."})
    export: str | None = field(default=None, metadata={
        "help": "Write both layouts' builds as one DatasetDict here (train.run --dataset) and stop."})
    split_ratios: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1], metadata={
        "help": "train/validation/test fractions of the --export builds (data.build's id-hash split)."})


def build_layouts(real: Path, work: Path, extra: list[str] = ()) -> list:
    """Both layouts built by data.build (once; reused after) and loaded: [bucket, folders] DatasetDicts."""
    from datasets import load_from_disk

    built = []
    for layout in ("bucket", "folders"):
        out = work / layout
        if not (out / "build_report.json").is_file():
            subprocess.run([sys.executable, "-m", "data.build", "--source", str(real / layout), "--output", str(out),
                            "--min_count", "1", "--max_count", "5", "--shorter_side", "128", "--num_proc", "1",
                            *extra], check=True, cwd=ROOT)
        built.append(load_from_disk(str(out)))
    return built


def export(real: Path, output: Path, ratios: list[float]) -> None:
    """One DatasetDict of both layouts, split by data.build's id hash, for ``train.run --dataset``."""
    from datasets import DatasetDict, concatenate_datasets

    parts = build_layouts(real, output.with_name(output.name + ".layouts"),
                          ["--split_ratios", *map(str, ratios)])
    splits = {name: concatenate_datasets([part[name] for part in parts if name in part])
              for name in ("train", "validation", "test") if any(name in part for part in parts)}
    DatasetDict(splits).save_to_disk(str(output))
    print(f"{output}: " + ", ".join(f"{name} {len(split)}" for name, split in splits.items()))


def build_pool(real: Path, work: Path) -> tuple[list, np.ndarray, list[str]]:
    """(images, labels, ids) of the 1-5-item bins of both layouts, every split pooled."""
    from datasets import concatenate_datasets

    pool = concatenate_datasets([built[split] for built in build_layouts(real, work) for split in built])
    if pool.features["label"].names != NAMES:
        fail(f"expected classes {NAMES}, the build has {pool.features['label'].names}")
    images = [image.convert("RGB") for image in pool["image"]]
    return images, np.asarray(pool["label"]), list(pool["image_id"])


def make_model(variant: dict, names: list[str] = NAMES) -> torch.nn.Module:
    """The base config (train/configs/tiny-resnet) with the variant's width and depths, from scratch."""
    config = AutoConfig.from_pretrained(BASE_CONFIG, id2label=dict(enumerate(names)),
                                        label2id={n: i for i, n in enumerate(names)})
    config.embedding_size = round(config.embedding_size * variant["width"])
    config.hidden_sizes = [round(size * variant["width"]) for size in config.hidden_sizes]
    config.depths = list(variant["depths"])
    return AutoModelForImageClassification.from_config(config)


def shrink(images: list, resolution: int, view: float = 1.0) -> list:
    """Images with their shorter side at ``WORK_MARGIN`` x resolution, as train.run augments them: cheaper than at
    the stored 128 px, and the final resize to resolution x resolution loses nothing more. ``view`` < 1 keeps only
    that central share of each side first (the pod, without the neighbours' edges)."""
    return [shrunk(centre(image, view), round(WORK_MARGIN * resolution)) for image in images]


def centre(image: Image.Image, view: float) -> Image.Image:
    """The central ``view`` share of each side of ``image``."""
    if view >= 1:
        return image
    w, h = image.size
    left, top = round(w * (1 - view) / 2), round(h * (1 - view) / 2)
    return image.crop((left, top, w - left, h - top))


def to_tensor(images: list, resolution: int, aspect: float = 1.0) -> torch.Tensor:
    """Resize to ``resolution`` rows of ``aspect`` x resolution columns (ABID photos are about 1.3 times as wide as
    high) and normalise with mean 0.5 / std 0.5, as the recipe's processor does."""
    size = (round(aspect * resolution), resolution)
    arrays = [np.asarray(image.resize(size, resample=2), dtype=np.float32) for image in images]
    return (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255 - 0.5) / 0.5


def loss_of(variant: dict, names: list[str] = NAMES) -> CountingLoss:
    counts = [int(name) for name in names]
    if variant["objective"] == "ordinal":
        return CountingLoss(counts, neighbour_mass=variant.get("neighbour_mass", 0.4))
    if variant["objective"] == "count_aware":
        return CountingLoss(counts, count_loss_weight=0.5)
    return CountingLoss(counts, label_smoothing=variant.get("label_smoothing", 0.0))


def train(variant: dict, images: list, labels: np.ndarray, ids: list[str], seed: int,
          init: torch.nn.Module | None = None, names: list[str] = NAMES) -> torch.nn.Module:
    """AdamW, cosine schedule with 10% warm-up, augmentation seeded by (seed, epoch, image id) as in train.run;
    from ``init``'s weights (fine-tuning) or from scratch. With ``ema`` in the variant, the model returned is the
    exponential moving average of the weights and batch-norm statistics over the steps, at that decay per step. With
    ``mixup`` > 0, each batch is blended with a shuffled copy of itself at a Beta(mixup, mixup) weight, and so is
    its loss."""
    set_seed(seed)
    model = (copy.deepcopy(init) if init is not None else make_model(variant, names)).train()
    loss = loss_of(variant, names)
    steps = variant["epochs"] * math.ceil(len(images) / variant["batch_size"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=variant["lr"], weight_decay=variant["weight_decay"])
    schedule = get_cosine_schedule_with_warmup(optimizer, round(0.1 * steps), steps)
    augment = Augmentation(**variant["augment"]) if variant["augment"] else None
    average, mixer = None, np.random.default_rng(seed)
    if variant.get("ema"):
        average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(variant["ema"]), use_buffers=True)
    for epoch in range(variant["epochs"]):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        for start in range(0, len(order), variant["batch_size"]):
            batch = order[start:start + variant["batch_size"]]
            picked = [images[i] for i in batch]
            if augment is not None:
                picked = [augment(image, random.Random(f"{seed}:{epoch}:{ids[i]}")) for image, i in zip(picked, batch)]
            pixels = to_tensor(picked, variant["resolution"], variant["aspect"])
            targets = torch.as_tensor(labels[batch])
            if variant.get("mixup"):
                value = mixed_loss(model, loss, pixels, targets, variant["mixup"], mixer)
            else:
                value = loss({"logits": model(pixel_values=pixels).logits}, targets)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            schedule.step()
            if average is not None:
                average.update_parameters(model)
    return (average.module if average is not None else model).eval()


def mixed_loss(model: torch.nn.Module, loss: CountingLoss, pixels: torch.Tensor, targets: torch.Tensor,
               alpha: float, rng: np.random.Generator) -> torch.Tensor:
    """Mixup: the loss of a blend of the batch and a shuffled copy, weighted between both copies' labels."""
    weight = float(rng.beta(alpha, alpha))
    order = torch.from_numpy(rng.permutation(len(targets)))
    logits = model(pixel_values=weight * pixels + (1 - weight) * pixels[order]).logits
    return weight * loss({"logits": logits}, targets) + (1 - weight) * loss({"logits": logits}, targets[order])


@torch.inference_mode()
def logits_of(model: torch.nn.Module, images: list, resolution: int, aspect: float = 1.0, flip: bool = False) -> list:
    pixels = to_tensor(images, resolution, aspect)
    pixels = pixels.flip(-1) if flip else pixels
    return torch.cat([model(pixel_values=chunk).logits for chunk in pixels.split(128)]).tolist()


def folds_of(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(train, validation, test) indices per fold: stratified folds, the same for every variant and seed (each
    class dealt round-robin after one fixed shuffle); 15% of each class of a fold's training part, drawn with the
    seed, is its validation split."""
    fixed, drawn = np.random.default_rng(0), np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=int)
    for label in np.unique(labels):
        members = fixed.permutation(np.flatnonzero(labels == label))
        fold_of[members] = np.arange(len(members)) % folds
    out = []
    for fold in range(folds):
        fit, validation = [], []
        for label in np.unique(labels):
            rest = drawn.permutation(np.flatnonzero((labels == label) & (fold_of != fold)))
            cut = round(0.15 * len(rest))
            validation += rest[:cut].tolist()
            fit += rest[cut:].tolist()
        out.append((np.sort(fit), np.sort(validation), np.flatnonzero(fold_of == fold)))
    return out


def run_all(args: BenchArguments) -> dict:
    stored, labels, ids = build_pool(Path(args.real), RESULTS / "real_bins")
    prepared: dict[tuple[int, float], list] = {}  # by (resolution, view)
    output = Path(args.output)
    saved = json.loads(output.read_text()) if output.is_file() else {"runs": {}}
    saved["machine"], saved["data"] = machine(), f"abid-real, {len(labels)} real bins with 1-5 items, pooled layouts"
    for name in args.variants:
        variant = BASE | VARIANTS[name]
        size_view = (variant["resolution"], variant["view"])
        if size_view not in prepared:
            prepared[size_view] = shrink(stored, *size_view)
        images = prepared[size_view]
        for seed in args.seeds:
            for fold, (fit, validation, test) in enumerate(folds_of(labels, args.folds, seed)):
                key = f"{name}/seed{seed}/fold{fold}of{args.folds}"
                if key in saved["runs"]:
                    continue
                started = time.time()
                model = train(variant, [images[i] for i in fit], labels[fit], [ids[i] for i in fit], seed)
                elapsed = time.time() - started
                held, shape = [images[i] for i in test], (variant["resolution"], variant["aspect"])
                saved["runs"][key] = {
                    "variant": name, "seed": seed, "fold": fold, "settings": variant, "train_s": round(elapsed, 1),
                    "fit_labels": labels[fit].tolist(), "validation_labels": labels[validation].tolist(),
                    "test_labels": labels[test].tolist(),
                    "validation_logits": logits_of(model, [images[i] for i in validation], *shape),
                    "test_logits": logits_of(model, held, *shape),
                    "test_flip_logits": logits_of(model, held, *shape, flip=True),
                }
                output.parent.mkdir(parents=True, exist_ok=True)
                output.write_text(json.dumps(saved))
                print(f"{key}: {elapsed:.0f} s", flush=True)
    return saved


def scored(run: dict) -> dict[str, float]:
    """One run's held-out figures: three decodings, flip TTA, calibration and the audit at thresholds chosen on its
    validation split, next to the constants chosen on its training part."""
    counts = np.arange(1, len(NAMES) + 1)
    test, validation = np.asarray(run["test_labels"]), np.asarray(run["validation_labels"])
    logits, flipped = np.asarray(run["test_logits"]), np.asarray(run["test_flip_logits"])
    truth = counts[test]
    fit = counts[np.asarray(run["fit_labels"])]
    majority = np.bincount(fit).argmax()
    central = min((math.floor(fit.mean()), math.ceil(fit.mean())), key=lambda c: np.mean((c - fit) ** 2))
    temperature = calibration.fit_temperature(np.asarray(run["validation_logits"]), validation)
    row = {"const_accuracy": float(np.mean(truth == majority)), "const_rmse": _rmse(central - truth),
           "temperature": temperature}
    for suffix, values in (("", logits), ("_tta", (logits + flipped) / 2)):
        probabilities = calibration.softmax(values)
        expected = probabilities @ counts
        rounded = np.clip(np.rint(expected), counts[0], counts[-1])
        row |= {f"accuracy{suffix}": float(np.mean(counts[values.argmax(-1)] == truth)),
                f"rmse{suffix}": _rmse(counts[values.argmax(-1)] - truth),
                f"rmse_expected{suffix}": _rmse(expected - truth),
                f"accuracy_rounded{suffix}": float(np.mean(rounded == truth)),
                f"rmse_rounded{suffix}": _rmse(rounded - truth)}
    row["ece_raw"] = calibration.scores(logits, test)["ece"]
    row["ece"] = calibration.scores(logits, test, temperature)["ece"]
    row["ece_if_calibrated"] = calibration.ece_if_calibrated(calibration.softmax(logits / temperature))["mean"]
    val_probabilities = calibration.softmax(np.asarray(run["validation_logits"]) / temperature)
    thresholds = audit.choose_thresholds(val_probabilities, validation, NAMES, 0.05)
    played = audit.audit(calibration.softmax(logits / temperature), test, NAMES, thresholds, 0.5,
                         1000 * run["seed"] + run["fold"])["at_thresholds"]
    row |= {f"audit_{key}": played[key] for key in ("false_alarm", "caught_1", "caught_2", "uncertain")}
    row["best_caught_2"] = best_caught_2(calibration.softmax(logits / temperature), test, 0.05)
    as_trained = audit.audit(calibration.softmax(logits), test, NAMES, rule.BUILT_IN, 0.5,
                             1000 * run["seed"] + run["fold"])["at_thresholds"]
    row |= {"raw_false_alarm": as_trained["false_alarm"], "raw_caught_2": as_trained["caught_2"]}
    return row | {"train_s": run["train_s"]}


def _rmse(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(errors, dtype=np.float64))))


def best_caught_2(probabilities: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The share of +-2 records flagged at the mismatch threshold that keeps this split's own false alarms at or under
    ``target``: the most any way of choosing thresholds beforehand could catch with this model (an oracle bound)."""
    p, offsets = audit.exhaustive(probabilities, labels, NAMES)
    correct = p[offsets == 0]
    threshold = max((t for t in audit.CANDIDATES if np.mean(correct <= t) <= target), default=0.0)
    return float(np.mean(p[np.abs(offsets) == 2] <= threshold))


def pooled_calibration(saved: dict) -> list[dict]:
    """ECE after T with one seed's held-out folds pooled (each bin scored once, by the run that held it out, at that
    run's temperature), next to what exactly right probabilities would show on as many bins; mean ± sd over seeds.
    Three times the bins of one fold lower that floor, so this is the closer reading of the calibration."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for run in saved["runs"].values():
        if "fold" in run:
            groups.setdefault((run["variant"], run["seed"]), []).append(run)
    by_variant: dict[str, list[dict]] = {}
    for (variant, _), runs in groups.items():
        scaled = np.concatenate([np.asarray(run["test_logits"]) / calibration.fit_temperature(
            np.asarray(run["validation_logits"]), np.asarray(run["validation_labels"])) for run in runs])
        labels = np.concatenate([run["test_labels"] for run in runs])
        by_variant.setdefault(variant, []).append({
            "bins": len(labels), "ece": calibration.scores(scaled, labels)["ece"],
            "floor": calibration.ece_if_calibrated(calibration.softmax(scaled))["mean"]})
    return [{"variant": variant, "seeds": len(rows), "bins per seed": f"{statistics.mean(r['bins'] for r in rows):.0f}",
             "ECE after T, folds pooled": spread([r["ece"] for r in rows]),
             "ECE if calibrated, pooled": spread([r["floor"] for r in rows])} for variant, rows in by_variant.items()]


def spread(values: list[float], digits: int = 3, signed: bool = False) -> str:
    """Mean ± the sample standard deviation (the one value when there is one): every bench table's spread."""
    sign = "+" if signed else ""
    if len(values) == 1:
        return f"{values[0]:{sign}.{digits}f}"
    return f"{statistics.mean(values):{sign}.{digits}f} ± {statistics.stdev(values):.{digits}f}"


COLUMNS = {  # table column -> (row key, scale)
    "accuracy (%)": ("accuracy", 100), "RMSE argmax": ("rmse", 1), "RMSE expected": ("rmse_expected", 1),
    "accuracy rounded-expected (%)": ("accuracy_rounded", 100), "RMSE rounded-expected": ("rmse_rounded", 1),
    "accuracy flip-TTA (%)": ("accuracy_tta", 100), "RMSE expected flip-TTA": ("rmse_expected_tta", 1),
    "ECE raw": ("ece_raw", 1), "ECE after T": ("ece", 1),
    "ECE if calibrated": ("ece_if_calibrated", 1), "T": ("temperature", 1),
    "audit false alarms (%)": ("audit_false_alarm", 100), "caught ±1 (%)": ("audit_caught_1", 100),
    "caught ±2 (%)": ("audit_caught_2", 100), "uncertain (%)": ("audit_uncertain", 100),
    "caught ±2 at the fold's own 5% (%)": ("best_caught_2", 100),
    "uncalibrated at 0.5 / 0.1: false alarms (%)": ("raw_false_alarm", 100),
    "uncalibrated at 0.5 / 0.1: caught ±2 (%)": ("raw_caught_2", 100), "train s": ("train_s", 1),
}


def scored_by_variant(saved: dict) -> dict[str, list[dict]]:
    """Every saved run scored, grouped by variant in the order they were first run."""
    by_variant: dict[str, list[dict]] = {}
    for run in saved["runs"].values():
        by_variant.setdefault(run["variant"], []).append(scored(run))
    return by_variant


def report(saved: dict, by_variant: dict[str, list[dict]]) -> str:
    """Mean ± sd over every (seed, fold) run of each variant (``scored_by_variant``), and the constants over the same
    folds."""
    rows = []
    for name, runs in by_variant.items():
        row = {"variant": name, "runs": len(runs)}
        for column, (key, scale) in COLUMNS.items():
            values = [scale * r[key] for r in runs if r[key] is not None]
            digits = 1 if scale == 100 or key == "train_s" else 3
            row[column] = spread(values, digits) if values else "–"
        rows.append(row)
    constants = next(iter(by_variant.values()), [])
    if constants:
        accuracy = [100 * r["const_accuracy"] for r in constants]
        rmse = [r["const_rmse"] for r in constants]
        rows.append({"variant": "constant (majority / central count of the training part)", "runs": len(constants),
                     "accuracy (%)": spread(accuracy, 1), "RMSE argmax": spread(rmse)})
    text = (f"Data: {saved.get('data')}. Machine: {describe(saved['machine'])} (shared with other work).\n\n"
            + markdown_table(rows, ["variant", "runs", *COLUMNS]))
    pooled = pooled_calibration(saved)
    if pooled:
        text += "\n\n" + markdown_table(pooled)
    return text


def ensemble(saved: dict, by_variant: dict[str, list[dict]], variants: list[str]) -> dict[str, float]:
    """Accuracy and expected-count RMSE of the named variants' runs with their probabilities averaged on each held-out
    fold (every seed holds out the same bins per fold), against their single runs: would averaging models help?"""
    by_fold: dict[int, list[dict]] = {}
    for run in saved["runs"].values():
        if run["variant"] in variants:
            by_fold.setdefault(run["fold"], []).append(run)
    if not by_fold:
        raise ValueError(f"no saved runs of {variants}")
    counts = np.arange(1, len(NAMES) + 1)
    accuracy, rmse = [], []
    for runs in by_fold.values():
        if any(run["test_labels"] != runs[0]["test_labels"] for run in runs):
            raise ValueError("runs of one fold hold out different bins; were they made with other --folds?")
        truth = np.asarray(runs[0]["test_labels"])
        probabilities = np.mean([calibration.softmax(np.asarray(run["test_logits"])) for run in runs], axis=0)
        accuracy.append(float(np.mean(probabilities.argmax(-1) == truth)))
        rmse.append(_rmse(probabilities @ counts - counts[truth]))
    singles = [row for name in variants for row in by_variant.get(name, [])]
    return {"runs": len(singles), "accuracy": statistics.mean(accuracy), "rmse_expected": statistics.mean(rmse),
            "single_accuracy": statistics.mean(r["accuracy"] for r in singles),
            "single_rmse_expected": statistics.mean(r["rmse_expected"] for r in singles)}


def plot(by_variant: dict[str, list[dict]], title: str, path: Path) -> Path:
    """Accuracy and expected-count RMSE of each variant, mean ± sd over its runs, against the constants' (dashed):
    which ideas moved a from-scratch model off chance, at a glance."""
    from matplotlib.figure import Figure

    names = list(by_variant)[::-1]  # the first variant run on top
    figure = Figure(figsize=(10, 0.35 * len(names) + 1.5), layout="constrained")
    panels = (("accuracy", 100, "const_accuracy", "accuracy (%)"),
              ("rmse_expected", 1, "const_rmse", "RMSE of the expected count (items)"))
    for axes, (key, scale, constant, label) in zip(figure.subplots(1, 2, sharey=True), panels):
        values = [[scale * run[key] for run in by_variant[name]] for name in names]
        axes.errorbar([np.mean(v) for v in values], names, fmt="o", capsize=3, label="mean ± sd over runs",
                      xerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in values])
        baseline = scale * np.mean([run[constant] for run in next(iter(by_variant.values()))])
        axes.axvline(baseline, color="black", linestyle="--", label="constant answer")
        axes.set_xlabel(label)
        axes.grid(axis="x", alpha=0.3)
    figure.legend(*axes.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def main(argv: list[str] | None = None) -> int:
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(argv)
    if unknown := [name for name in args.variants if name not in VARIANTS]:
        fail(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if not args.report_only:
        if not (Path(args.real) / "labels.csv").is_file():
            fail(f"the real bins are not at {args.real}")
        if args.export:
            export(Path(args.real), Path(args.export), args.split_ratios)
            return 0
        torch.set_num_threads(args.threads)
        run_all(args)
    output = Path(args.output)
    if not output.is_file():
        fail(f"no results at {output} yet")
    saved = json.loads(output.read_text())
    by_variant = scored_by_variant(saved)
    table = report(saved, by_variant)
    output.with_suffix(".md").write_text(table + "\n")
    print(table)
    picture = plot(by_variant, f"From-scratch variants on {saved.get('data')}", output.with_suffix(".png"))
    print(f"\nplot: {picture}")
    if args.ensemble:
        try:
            scores = ensemble(saved, by_variant, args.ensemble)
        except ValueError as error:
            fail(str(error))
        print(f"\nensemble of {scores['runs']} runs of {', '.join(args.ensemble)}, averaged per fold: accuracy "
              f"{100 * scores['accuracy']:.1f}% (single runs {100 * scores['single_accuracy']:.1f}%), expected-count "
              f"RMSE {scores['rmse_expected']:.3f} (single runs {scores['single_rmse_expected']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
