"""Cross-entropy vs the count-aware objective, side by side on the same data and seeds.

    python -m bench.objective [--dataset DIR] [--seeds 0 1 2] [--epochs 12] [-- extra train.run arguments]

Each (objective, seed) pair is one ``train.run`` with identical arguments except ``--objective``; the table reports
test accuracy, RMSE of the argmax count and RMSE of the expected (probability-weighted) count, per seed and as a mean,
next to the constant baselines. Without ``--dataset`` a synthetic dataset is generated and built under bench/results/.
The bench is resumable: a finished run trained with the same arguments is reused and a killed one continues from its
last checkpoint; ``--fresh`` starts every run over.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from bench.real_bins import spread
from bench.report import RESULTS, describe, machine, markdown_table, save_results
from bench.train_throughput import model_source, synthetic_dataset
from train.args import parse_args
from train.run import run

KEYS = ("test_accuracy", "test_rmse", "test_rmse_expected", "test_off_by_one_accuracy")


@dataclass
class ObjectiveArguments:
    dataset: str | None = field(default=None, metadata={"help": "A data.build folder (default: synthetic)."})
    num_images: int = field(default=3000, metadata={"help": "Synthetic images when no dataset is given."})
    model: str = field(default="tiny-resnet", metadata={"help": "tiny-resnet, tiny-vit, or a checkpoint."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds, each run with both."})
    epochs: int = field(default=12, metadata={"help": "Training epochs per run."})
    count_loss_weight: float = field(default=0.5, metadata={"help": "Weight of the count penalty."})
    fresh: bool = field(default=False, metadata={"help": "Start every run over instead of reusing finished ones."})


def prepare(output: Path, args: list[str], fresh: bool) -> dict | None:
    """Test metrics of a run already finished with exactly these arguments; otherwise mark the folder for this run.

    A folder last used with other arguments (or ``--fresh``) is started over; one with the same arguments resumes
    from its last checkpoint, so a killed bench loses at most the epoch in progress.
    """
    recorded, results = output / "bench_args.json", output / "all_results.json"
    same = not fresh and recorded.is_file() and json.loads(recorded.read_text()) == args
    if same and results.is_file():
        metrics = json.loads(results.read_text())
        if all(key in metrics for key in KEYS):
            return metrics
    if not same and output.is_dir():
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    recorded.write_text(json.dumps(args))
    return None


def main() -> None:
    bench, extra = HfArgumentParser(ObjectiveArguments).parse_args_into_dataclasses(return_remaining_strings=True)
    dataset = bench.dataset or str(synthetic_dataset(bench.num_images))
    source = model_source(bench.model) if bench.model.startswith("tiny-") else bench.model
    rows = []
    for seed in bench.seeds:
        for objective in ("cross_entropy", "count_aware"):
            output = RESULTS / "objective" / f"{objective}-seed{seed}"
            args = ["--dataset", dataset, "--model_name_or_path", source, "--output_dir", str(output),
                    "--objective", objective, "--count_loss_weight", str(bench.count_loss_weight), "--seed",
                    str(seed), "--num_train_epochs", str(bench.epochs), "--learning_rate", "2e-3",
                    "--save_total_limit", "1", "--disable_tqdm", "True", *extra]
            metrics = prepare(output, args, bench.fresh) or run(*parse_args(args))
            rows.append({"objective": objective, "seed": seed, **{k: metrics[k] for k in KEYS},
                         "baseline_majority_accuracy": metrics["test_baseline_majority_accuracy"],
                         "baseline_constant_rmse": metrics["test_baseline_constant_rmse"]})
    summary = summarise(rows)
    info = machine()
    save_results("objective", {"machine": info, "dataset": dataset, "model": bench.model, "epochs": bench.epochs,
                               "count_loss_weight": bench.count_loss_weight, "runs": rows, "summary": summary})
    print(f"\nMachine: {describe(info)}; model {bench.model}, {bench.epochs} epochs, seeds {bench.seeds}\n")
    print(markdown_table(summary, ["objective", *KEYS]))
    base = rows[0]
    print(f"\nConstant baselines on the test split: majority accuracy {base['baseline_majority_accuracy']:.4f}, "
          f"most central count RMSE {base['baseline_constant_rmse']:.4f}")


def summarise(rows: list[dict]) -> list[dict]:
    """Each objective's mean ± sd over its seeds, in bench.real_bins' one spread format (sample sd)."""
    return [{"objective": objective, **{key: spread([r[key] for r in rows if r["objective"] == objective], 4)
                                        for key in KEYS}}
            for objective in ("cross_entropy", "count_aware")]


if __name__ == "__main__":
    sys.exit(main())
