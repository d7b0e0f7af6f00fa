"""Training figures saved as PNG: the confusion matrix, and loss / accuracy / RMSE curves from the Trainer's logs.

Figures are drawn on matplotlib's Agg canvas without pyplot, so nothing opens a window and a notebook that imports
this module keeps its own backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

# (panel title, [(log_history key, legend label)], (baseline key, legend label) or None)
_CURVE_PANELS = (
    ("Loss", [("loss", "train"), ("eval_loss", "eval")], None),
    (
        "Eval accuracy",
        [("eval_accuracy", "model")],
        ("eval_baseline_majority_accuracy", "always the most frequent count"),
    ),
    (
        "Eval RMSE (items)",
        [("eval_rmse", "model"), ("eval_rmse_expected", "model, expected count")],
        ("eval_baseline_constant_rmse", "always the most central count"),
    ),
)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    labels: Sequence[str | int],
    path: str | Path,
    title: str = "Confusion matrix",
) -> Path:
    """Write the confusion matrix (rows true, columns predicted) with its counts, coloured by row fraction.

    Colouring by the fraction of each true count's images keeps rare classes as readable as frequent ones. A matrix
    of zeros (no images) still draws; a matrix that is not square, does not match `labels` or has no classes raises
    ValueError, as there is nothing meaningful to show.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    if len(labels) == 0 or counts.shape != (len(labels), len(labels)):
        raise ValueError(f"Need a square matrix with one row per label; got shape {counts.shape} for labels {labels}.")
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)

    size = 2.5 + 0.6 * len(labels)
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="fraction of the true count's images")
    names = [str(label) for label in labels]
    axes.set_xticks(range(len(names)), names)
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted count")
    axes.set_ylabel("true count")
    axes.set_title(title)
    for (row, column), value in np.ndenumerate(counts):
        colour = "white" if fractions[row, column] > 0.5 else "black"
        axes.text(column, row, str(value), ha="center", va="center", color=colour)
    return _save(figure, path)


def plot_training_curves(log_history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Write train/eval loss, eval accuracy and eval RMSE against step, from `Trainer.state.log_history`.

    Never fails on missing keys: a panel with nothing logged yet (no eval so far, an empty history) says so, because
    this runs at the end of training, where an exception would cost the run's remaining outputs. Constant baselines,
    logged by `train.metrics.flatten`, show as dashed lines.
    """
    figure = Figure(figsize=(15, 4), layout="constrained")
    for axes, (title, series, baseline) in zip(figure.subplots(1, len(_CURVE_PANELS)), _CURVE_PANELS):
        axes.set_title(title)
        axes.set_xlabel("step")
        for key, label in series:
            steps, values = _series(log_history, key)
            if steps:
                axes.plot(steps, values, marker="o", markersize=3, label=label)
        if baseline is not None:
            key, label = baseline
            values = _series(log_history, key)[1]
            if values:
                axes.axhline(values[-1], linestyle="--", color="grey", label=label)
        if axes.has_data():
            axes.legend()
        else:
            axes.text(0.5, 0.5, "nothing logged yet", transform=axes.transAxes, ha="center", va="center")
    return _save(figure, path)


def _series(log_history: Sequence[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    entries = [entry for entry in log_history if key in entry]
    return [entry["step"] for entry in entries], [entry[key] for entry in entries]


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
