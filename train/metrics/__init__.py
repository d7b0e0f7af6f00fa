"""The project's counting metrics: the `evaluate` module in ./counting plus helpers to log and report its results.

    names = dataset["train"].features["label"].names      # e.g. ["0", "1", "2", "3", "4", "5+"]
    counts = counts_of(names)      # core.labels: [0, 1, 2, 3, 4, 5]
    results = load().compute(predictions=[counts[i] for i in predicted_ids],
                             references=[counts[i] for i in label_ids], labels=counts)
    trainer_metrics = flatten(results)
    print(format_table(results, names))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import evaluate

from core.labels import counts_of

COUNTING_METRIC = Path(__file__).resolve().parent / "counting"


def load() -> evaluate.EvaluationModule:
    """The counting metric, by absolute path so that it loads from any cwd and offline.

    Kept in memory: callers pass all predictions to one `compute`, so evaluate's on-disk cache is not needed, and its
    cache files collide when several runs share a cache folder.
    """
    return evaluate.load(str(COUNTING_METRIC), keep_in_memory=True)


def flatten(results: dict) -> dict[str, float]:
    """Scalar results only, for Trainer logs: every top-level number plus accuracy_count_<c> and rmse_count_<c>.

    Per-class values of a class with no images are left out rather than logged as NaN.
    """
    scalars = {key: float(value) for key, value in results.items() if isinstance(value, (int, float))}
    for count, stats in results["per_class"].items():
        for name in ("accuracy", "rmse"):
            if stats[name] is not None:
                scalars[f"{name}_count_{count}"] = float(stats[name])
    return scalars


def format_table(results: dict, label_names: Sequence[str] | None = None) -> str:
    """Markdown report in the abid_challenge README format, with the constant baselines next to the model.

    `label_names` are the dataset's ClassLabel names; given, a class shows as its name ("5+") instead of its count.
    """
    names = {count: str(count) for count in results["labels"]}
    if label_names is not None:
        names |= dict(zip(counts_of(label_names), label_names))
    # JSON turns the integer keys of per_class into strings; accept results read back from a file.
    per_class = {int(count): stats for count, stats in results["per_class"].items()}
    majority, central = results["baseline_majority_count"], results["baseline_constant_count"]
    extra = (
        f"MAE {results['mae']:.3f}, off-by-one accuracy {100 * results['off_by_one_accuracy']:.2f}%, "
        f"macro F1 {results['f1_macro']:.3f}"
    )
    if "rmse_expected" in results:
        extra += (
            f"; expected (probability-weighted) count: RMSE {results['rmse_expected']:.3f}, "
            f"MAE {results['mae_expected']:.3f}"
        )
    lines = [
        "| Accuracy (%) | RMSE |",
        "|---|---|",
        f"| {100 * results['accuracy']:.2f} | {results['rmse']:.3f} |",
        "",
        f"Constant baselines on the same {results['num_samples']} images: always predicting "
        f"{names.get(majority, str(majority))} (the most frequent count) is "
        f"{100 * results['baseline_majority_accuracy']:.2f}% accurate; always predicting "
        f"{names.get(central, str(central))} (the integer nearest the mean count) has RMSE "
        f"{results['baseline_constant_rmse']:.3f}.",
        "",
        f"{extra}.",
        "",
        "| Quantity | Per class accuracy (%) | Per class RMSE |",
        "|---|---|---|",
    ]
    for count in results["labels"]:
        stats = per_class[count]
        if stats["support"]:
            lines.append(f"| {names[count]} | {100 * stats['accuracy']:.1f} | {stats['rmse']:.3f} |")
        else:
            lines.append(f"| {names[count]} | – | – |")
    return "\n".join(lines) + "\n"
