"""How far synthetic bins carry to real ones, measured on ../shared/abid-real's 962 bins with 1-5 items.

    python -m bench.transfer [--seeds 0 1] [--folds 3] [--synthetic_images 3000] [--resolution 64] [--threads 1]
    python -m bench.transfer --parts pretrain --finetune_variant heavy-aug-64
    python -m bench.transfer --parts synthetic-only --synthetic_variant heavy-aug-64
    python -m bench.transfer --report_only    # the tables from the runs saved so far
    python -m bench.transfer --report_only --output B.json --paired_with A.json   # B's arms paired against A's

1. Synthetic only: the demo's recipe (tiny-resnet from scratch, 15 epochs, learning rate 2e-3, batch 32, the default
   augmentation; 0-5 items as six classes) trained on synthetic bins, tested on every real bin: accuracy, RMSE,
   expected-count RMSE and verify's false alarms on true records (P(recorded count) <= 0.1, the handler's default
   mismatch threshold), next to the constant answer 3 and the class prior (ABID's balance, which raises no alarm).
   ``--synthetic_variant heavy-aug-64`` trains it with that bench.real_bins variant's settings over the demo's (the
   real-bin recipe's heavier augmentation, which ``make demo`` now uses too), saved beside the demo recipe's runs;
   pre-training then starts from it.
2. Pre-training: that synthetic-only model, re-headed to 1-5 items (its head without the row for 0), fine-tuned on
   real bins, against the model trained on real bins only, on the same stratified folds and seeds as bench.real_bins,
   with the same training loop (bench.real_bins.train) and the same scoring (bench.real_bins.scored); both arms
   train on real bins with bench.real_bins' base settings, or with another of its variants (``--finetune_variant
   heavy-aug-64``: the real-bin recipe's augmentation), whose runs are saved beside the base ones.

Training runs at ``--resolution`` (64 px: a shared 2-core CPU) on one thread; ``--pretrain_resolution`` trains the
synthetic-only model at another one. Results are saved after every run to
bench/results/transfer.json (logits included) and a restarted bench skips finished runs; pre-trained weights are kept
in bench/results/transfer/ as safetensors (the synthetic-only models, which are the pre-trained ones).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import HfArgumentParser

from bench import real_bins
from bench.report import RESULTS, describe, fail, machine, markdown_table
from data.synthetic import ABID_COUNT_SHARE, generate

SYNTHETIC_NAMES = [str(k) for k in range(6)]
MISMATCH_THRESHOLD = 0.1  # inference/handler.py's default
ABID_SHARE = np.array(ABID_COUNT_SHARE)
DEMO = real_bins.BASE | {"epochs": 15, "lr": 2e-3, "batch_size": 32}
DEFAULT_VARIANT = "ce-64"  # bench.real_bins' base settings: runs with it carry no variant tag
# pre-training table column -> (bench.real_bins.scored key, scale)
PRETRAIN_COLUMNS = {"accuracy (%)": ("accuracy", 100), "RMSE argmax": ("rmse", 1),
                    "RMSE expected": ("rmse_expected", 1), "ECE after T": ("ece", 1),
                    "ECE if calibrated": ("ece_if_calibrated", 1),
                    "audit false alarms (%)": ("audit_false_alarm", 100), "caught ±2 (%)": ("audit_caught_2", 100),
                    "caught ±2 at the fold's own 5% (%)": ("best_caught_2", 100)}


@dataclass
class TransferArguments:
    real: str = field(default=str(real_bins.REAL), metadata={"help": "The abid-real folder."})
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata={"help": "Training seeds."})
    folds: int = field(default=3, metadata={"help": "Cross-validation folds for pre-training vs real only."})
    synthetic_images: int = field(default=3000, metadata={"help": "Synthetic bins (the demo's default number)."})
    resolution: int = field(default=64, metadata={"help": "Training resolution (the demo's processor uses 128)."})
    pretrain_resolution: int | None = field(default=None, metadata={
        "help": "Resolution of the synthetic-only (pre-training) model, if not --resolution: the network pools "
                "globally, so it fine-tunes at --resolution from weights learnt smaller and cheaper."})
    demo_epochs: int = field(default=15, metadata={"help": "Epochs of the synthetic-only (demo recipe) model."})
    finetune_epochs: int = field(default=20, metadata={"help": "Epochs on real bins (bench.real_bins' ce-64)."})
    synthetic_variant: str = field(default=DEFAULT_VARIANT, metadata={
        "help": "The bench.real_bins variant whose settings the synthetic-only model adds to the demo recipe's."})
    finetune_variant: str = field(default=DEFAULT_VARIANT, metadata={
        "help": "The bench.real_bins variant both arms train on real bins with (heavy-aug-64: the real-bin recipe's)."})
    parts: list[str] = field(default_factory=lambda: ["synthetic-only", "pretrain"], metadata={
        "help": "Which parts to run: synthetic-only, pretrain (which needs the synthetic-only model)."})
    arms: list[str] = field(default_factory=lambda: ["real-only", "pretrained"], metadata={
        "help": "Which arms of the pre-training part to train: real-only, pretrained."})
    threads: int = field(default=1, metadata={"help": "torch threads (the CPU is usually shared)."})
    output: str = field(default=str(RESULTS / "transfer.json"), metadata={"help": "Resumable results file."})
    report_only: bool = field(default=False, metadata={"help": "Print the tables of the runs saved so far."})
    paired_with: str | None = field(default=None, metadata={
        "help": "Another results file (e.g. pre-trained on another --synthetic_images): also print each arm's paired "
                "differences against the same arm there, on the seeds and folds both hold."})


def synthetic_bins(folder: Path, count: int, resolution: int) -> tuple[list, np.ndarray, list[str]]:
    """(images shrunk for training, counts, ids) of ``count`` synthetic bins, generated once into ``folder``."""
    generate(folder, count, seed=0)
    images, labels, ids = [], [], []
    for path in sorted((folder / "bin-images").glob("*.jpg"))[:count]:
        with Image.open(path) as image:
            image.draft("RGB", (2 * resolution, 2 * resolution))
            images.append(image.convert("RGB"))
        labels.append(json.loads((folder / "metadata" / f"{path.stem}.json").read_text())["EXPECTED_QUANTITY"])
        ids.append(path.stem)
    return real_bins.shrink(images, resolution), np.asarray(labels), ids


def synthetic_only(run: dict) -> dict[str, float]:
    """The six-class model's figures on real bins with 1-5 items, and the constant and prior baselines'."""
    counts = np.arange(6)
    truth = np.asarray(run["test_counts"])
    logits = np.asarray(run["test_logits"])
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    predicted, expected = counts[logits.argmax(1)], probabilities @ counts
    prior_mean = float(ABID_SHARE @ counts)
    return {"accuracy": float(np.mean(predicted == truth)), "rmse": _rmse(predicted - truth),
            "rmse_expected": _rmse(expected - truth),
            "false_alarm": float(np.mean(probabilities[np.arange(len(truth)), truth] <= MISMATCH_THRESHOLD)),
            "predicted_share": np.bincount(predicted, minlength=6).tolist(),
            "const3_accuracy": float(np.mean(truth == 3)), "const3_rmse": _rmse(3 - truth),
            "prior_rmse_expected": _rmse(prior_mean - truth),
            "prior_false_alarm": float(np.mean(ABID_SHARE[truth] <= MISMATCH_THRESHOLD)), "train_s": run["train_s"]}


def _rmse(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(errors, dtype=np.float64))))


def save(saved: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(saved))


def tagged(name: str, variant: str) -> str:
    """A run's name with the bench.real_bins variant it trains with, unless that is the default."""
    return name if variant == DEFAULT_VARIANT else f"{name} ({variant})"


def run_synthetic_only(args: TransferArguments, saved: dict, synthetic, real) -> None:
    images, labels, ids = synthetic
    resolution = synthetic_resolution(args)
    variant = DEMO | {"resolution": resolution, "epochs": args.demo_epochs}
    variant |= real_bins.VARIANTS[args.synthetic_variant]
    real_images = real_bins.shrink(real[0], resolution)  # scored at the model's own resolution
    for seed in args.seeds:
        key = f"{tagged('synthetic-only', args.synthetic_variant)}/seed{seed}"
        if key in saved["runs"]:
            continue
        started = time.time()
        model = real_bins.train(variant, images, labels, ids, seed, names=SYNTHETIC_NAMES)
        weights_path(args, seed).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights_path(args, seed)))
        saved["runs"][key] = {"part": "synthetic-only", "variant": args.synthetic_variant, "seed": seed,
                              "settings": variant,
                              "train_s": round(time.time() - started, 1), "test_counts": (real[1] + 1).tolist(),
                              "test_logits": real_bins.logits_of(model, real_images, resolution)}
        save(saved, Path(args.output))
        print(f"{key}: {saved['runs'][key]['train_s']:.0f} s", flush=True)


def synthetic_resolution(args: TransferArguments) -> int:
    return args.pretrain_resolution or args.resolution


def weights_path(args: TransferArguments, seed: int) -> Path:
    name = f"synthetic-only-seed{seed}-{synthetic_resolution(args)}px"
    if args.synthetic_variant != DEFAULT_VARIANT:
        name += f"-{args.synthetic_variant}"
    return Path(args.output).with_suffix("") / f"{name}.safetensors"


def pretrained(args: TransferArguments, seed: int) -> torch.nn.Module:
    """The synthetic-only (demo recipe) model re-headed to 1-5 items: its six-class head without the row for 0."""
    state = load_file(str(weights_path(args, seed)))
    model = real_bins.make_model(real_bins.BASE)
    head = [key for key in state if state[key].shape[:1] == (len(SYNTHETIC_NAMES),) and "classifier" in key]
    model.load_state_dict({key: value[1:] if key in head else value for key, value in state.items()})
    return model


def run_pretrain(args: TransferArguments, saved: dict, real) -> None:
    """Fine-tuned from the synthetic-only model vs real only, same folds, seeds and loop."""
    images, labels, ids = real
    variant = real_bins.BASE | {"resolution": args.resolution, "epochs": args.finetune_epochs}
    variant |= real_bins.VARIANTS[args.finetune_variant]
    pretrained_arm = "pretrained+real"
    if args.synthetic_variant != DEFAULT_VARIANT:
        pretrained_arm += f" (synthetic {args.synthetic_variant})"
    arms = []  # (run name, starts from the synthetic model)
    if "real-only" in args.arms:
        arms.append((tagged("real-only", args.finetune_variant), False))
    if "pretrained" in args.arms:
        arms.append((tagged(pretrained_arm, args.finetune_variant), True))
    for seed in args.seeds:
        init = None
        for fold, (fit, validation, test) in enumerate(real_bins.folds_of(labels, args.folds, seed)):
            for arm, from_synthetic in arms:
                key = f"{arm}/seed{seed}/fold{fold}of{args.folds}"
                if key in saved["runs"]:
                    continue
                if from_synthetic and init is None:
                    init = pretrained(args, seed)
                started = time.time()
                model = real_bins.train(variant, [images[i] for i in fit], labels[fit], [ids[i] for i in fit], seed,
                                        init=init if from_synthetic else None)
                held = [images[i] for i in test]
                saved["runs"][key] = {
                    "part": "pretrain", "variant": arm, "seed": seed, "fold": fold, "settings": variant,
                    "train_s": round(time.time() - started, 1), "fit_labels": labels[fit].tolist(),
                    "validation_labels": labels[validation].tolist(), "test_labels": labels[test].tolist(),
                    "validation_logits": real_bins.logits_of(model, [images[i] for i in validation], args.resolution),
                    "test_logits": real_bins.logits_of(model, held, args.resolution),
                    "test_flip_logits": real_bins.logits_of(model, held, args.resolution, flip=True)}
                save(saved, Path(args.output))
                print(f"{key}: {saved['runs'][key]['train_s']:.0f} s", flush=True)


def mean_sd(values: list[float], scale: float, signed: bool = False) -> str:
    """bench.real_bins' spread of the scaled values: percentages to 0.1, the rest to 0.001."""
    return real_bins.spread([float(v) * scale for v in values], 1 if scale == 100 else 3, signed)


def pretrain_arms(saved: dict) -> dict[str, dict[tuple, dict]]:
    """Every fine-tuning run scored, by arm, then by (settings, seed, fold): the key runs are paired on."""
    arms: dict[str, dict[tuple, dict]] = {}
    for run in saved["runs"].values():
        if run["part"] == "pretrain":
            pair = (json.dumps(run["settings"], sort_keys=True), run["seed"], run["fold"])
            arms.setdefault(run["variant"], {})[pair] = real_bins.scored(run)
    return arms


def report(saved: dict, baseline: tuple[str, dict] | None = None) -> str:
    """The two tables: synthetic only vs the constants; pre-trained vs real only (mean ± sd over seeds and folds);
    with ``baseline`` (its name and its saved runs), each arm's paired differences against the same arm there."""
    by_variant: dict[str, list[dict]] = {}
    for run in saved["runs"].values():
        if run["part"] == "synthetic-only":
            by_variant.setdefault(run.get("variant", DEFAULT_VARIANT), []).append(synthetic_only(run))
    text = [f"Data: {saved.get('data', '?')}. Machine: {describe(saved['machine'])}." if "machine" in saved else ""]
    if by_variant:
        table = [{"model": f"synthetic only (demo recipe{'' if name == DEFAULT_VARIANT else ' with ' + name}, "
                           f"{len(rows)} seeds)",
                  "accuracy (%)": mean_sd([r["accuracy"] for r in rows], 100),
                  "RMSE": mean_sd([r["rmse"] for r in rows], 1),
                  "expected-count RMSE": mean_sd([r["rmse_expected"] for r in rows], 1),
                  "true records called mismatch (%)": mean_sd([r["false_alarm"] for r in rows], 100)}
                 for name, rows in by_variant.items()]
        first = next(iter(by_variant.values()))[0]  # every synthetic-only run is scored on the same real bins
        table += [{"model": "constant 3", "accuracy (%)": f"{100 * first['const3_accuracy']:.1f}",
                   "RMSE": f"{first['const3_rmse']:.3f}"},
                  {"model": "class prior (ABID's balance)",
                   "expected-count RMSE": f"{first['prior_rmse_expected']:.3f}",
                   "true records called mismatch (%)": f"{100 * first['prior_false_alarm']:.1f}"}]
        text += ["", markdown_table(table)]
    arms = pretrain_arms(saved)
    if arms:
        text += ["", markdown_table(pretrain_table(arms)), "", markdown_table(real_bins.pooled_calibration(saved))]
    if arms and baseline:
        text += ["", markdown_table(paired_against(arms, pretrain_arms(baseline[1]), baseline[0]))]
    return "\n".join(text)


def paired_against(arms: dict[str, dict[tuple, dict]], base: dict[str, dict[tuple, dict]], name: str) -> list[dict]:
    """Each arm's paired differences against the same arm in another results file (say, pre-trained on another
    number of synthetic bins), over the (settings, seed, fold) runs both hold."""
    table = []
    for arm, scores in arms.items():
        pairs = [pair for pair in scores if pair in base.get(arm, {})]
        if pairs:
            table.append({"model": f"{arm}: paired difference against {name}", "runs": len(pairs),
                          **{column: mean_sd([scores[p][key] - base[arm][p][key] for p in pairs], scale, signed=True)
                             for column, (key, scale) in PRETRAIN_COLUMNS.items()}})
    return table


def pretrain_table(arms: dict[str, dict[tuple, dict]]) -> list[dict]:
    """Each arm, mean ± sd over its runs; after each pre-trained arm, its paired differences against the real-only
    arm trained with the same settings on the same seeds and folds; then the constants."""
    real_only = {pair: name for name, scores in arms.items() if name.startswith("real-only") for pair in scores}
    table = []
    for arm, scores in arms.items():
        table.append({"model": arm, "runs": len(scores), **{column: mean_sd([s[key] for s in scores.values()], scale)
                                                             for column, (key, scale) in PRETRAIN_COLUMNS.items()}})
        baselines = {real_only.get(pair) for pair in scores}
        if arm.startswith("real-only") or len(baselines) != 1 or None in baselines:
            continue
        baseline = baselines.pop()
        base = arms[baseline]
        table.append({"model": f"paired difference against {baseline}", "runs": len(scores),
                      **{column: mean_sd([s[key] - base[pair][key] for pair, s in scores.items()], scale, signed=True)
                         for column, (key, scale) in PRETRAIN_COLUMNS.items()}})
    constants = list(next(iter(arms.values())).values())
    table.append({"model": "constant (training part's majority / central count)", "runs": len(constants),
                  "accuracy (%)": mean_sd([s["const_accuracy"] for s in constants], 100),
                  "RMSE argmax": mean_sd([s["const_rmse"] for s in constants], 1)})
    return table


def main(argv: list[str] | None = None) -> int:
    (args,) = HfArgumentParser(TransferArguments).parse_args_into_dataclasses(argv)
    output = Path(args.output)
    saved = json.loads(output.read_text()) if output.is_file() else {"runs": {}}
    baseline = None
    if args.paired_with:
        if not Path(args.paired_with).is_file():
            fail(f"no results file at --paired_with {args.paired_with}")
        baseline = (args.paired_with, json.loads(Path(args.paired_with).read_text()))
    if args.report_only:
        print(report(saved, baseline))
        return 0
    if not (Path(args.real) / "bucket").is_dir():
        fail(f"no real bins at {args.real} (expected the abid-real layout: bucket/ and folders/)")
    unknown = set(args.parts) - {"synthetic-only", "pretrain"}
    if unknown:
        fail(f"unknown --parts {sorted(unknown)}: choose from synthetic-only, pretrain")
    unknown = set(args.arms) - {"real-only", "pretrained"}
    if unknown:
        fail(f"unknown --arms {sorted(unknown)}: choose from real-only, pretrained")
    variants = (("--synthetic_variant", args.synthetic_variant, synthetic_resolution(args)),
                ("--finetune_variant", args.finetune_variant, args.resolution))
    for option, name, resolution in variants:
        if name not in real_bins.VARIANTS:
            fail(f"unknown {option} {name}: choose from {', '.join(real_bins.VARIANTS)}")
        if real_bins.VARIANTS[name].get("resolution", resolution) != resolution:
            fail(f"{option} {name} trains at another resolution than its model ({resolution} px)")
    torch.set_num_threads(args.threads)
    work = output.with_suffix("")
    stored, labels, ids = real_bins.build_pool(Path(args.real), work / "real")
    real = (real_bins.shrink(stored, args.resolution), labels, ids)
    synthetic = synthetic_bins(work / "synthetic", args.synthetic_images, synthetic_resolution(args))
    saved["machine"] = machine()
    saved["data"] = (f"{len(labels)} real bins with 1-5 items from {args.real} (pooled layouts); "
                     f"{args.synthetic_images} synthetic bins (data.synthetic, seed 0); {args.resolution} px")
    if synthetic_resolution(args) != args.resolution:
        saved["data"] += f", pre-trained at {synthetic_resolution(args)} px"
    run_synthetic_only(args, saved, synthetic, real)  # its model is also the pre-trained one
    if "pretrain" in args.parts:
        run_pretrain(args, saved, real)
    text = report(saved, baseline)
    print(text)
    output.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
