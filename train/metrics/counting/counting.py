"""Counting metrics for bin images, computed on count values (items), not class ids.

One module for training, evaluation, notebooks and benchmarks, so every number in the project means the same thing.
It is self-contained (numpy only) because `evaluate` copies this file into its module cache and imports it from there.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Scores predicted item counts against true counts: classification metrics over the count classes (accuracy, macro
precision / recall / F1, a confusion matrix, per-class accuracy), count errors in items (RMSE, MAE, off-by-one
accuracy, per-class RMSE as in the abid_challenge table), and the two constant baselines any model result must beat.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted count per image, e.g. 3 (a count value, not a class id).
    references (`list` of `int`): true count per image. For an overflow class such as "5+" pass its count, 5.
    expected_counts (`list` of `float`, *optional*): probability-weighted count per image, sum over classes of
        p(class) * count(class). Adds `rmse_expected` and `mae_expected`; it is a real number and is not rounded.
    labels (`list` of `int`, *optional*): the count classes to report, in this order, e.g. every count of the
        dataset's ClassLabel so that classes absent from this data still get rows. Must contain every count that
        occurs in `references` and `predictions`. Default: the sorted counts that occur in either.

Returns:
    accuracy: fraction of images whose count is exactly right.
    precision_macro, recall_macro, f1_macro: unweighted means over `labels`; a class with no predictions (precision)
        or no images (recall) scores 0 there.
    rmse, mae: root mean squared / mean absolute count error, in items.
    off_by_one_accuracy: fraction of images with |prediction - reference| <= 1.
    rmse_expected, mae_expected: the same errors for `expected_counts` (only when it is given).
    baseline_majority_count, baseline_majority_accuracy: the most frequent reference count (the smallest one on a
        tie) and the accuracy of predicting it for every image.
    baseline_constant_count, baseline_constant_rmse: the integer count nearest the mean reference count (the smaller
        one on a tie), which is the constant integer prediction with the least RMSE, and that RMSE.
    num_samples: number of images.
    labels: the count classes, in the order of `per_class` and `confusion_matrix`.
    per_class: {count: {"accuracy", "rmse", "support"}} over the images whose TRUE count is `count`: accuracy is the
        recall of that class, rmse the error of the predictions for those images, support their number. Accuracy and
        rmse are None when support is 0.
    confusion_matrix: list of lists, rows are true counts and columns predicted counts, both in `labels` order.

Examples:
    >>> metric = evaluate.load("train/metrics/counting")
    >>> results = metric.compute(predictions=[0, 2, 3, 3], references=[0, 1, 3, 5])
    >>> results["accuracy"], results["rmse"], results["off_by_one_accuracy"]
    (0.5, 1.118033988749895, 0.75)
"""


class Counting(evaluate.Metric):
    """Counting metrics over count values, with per-class rows and constant baselines."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            format="numpy",
        )

    def _compute(
        self,
        predictions: np.ndarray,
        references: np.ndarray,
        expected_counts: list[float] | np.ndarray | None = None,
        labels: list[int] | None = None,
    ) -> dict:
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if references.size == 0:
            raise ValueError("No images to score: predictions and references are empty.")
        labels = _check_labels(labels, predictions, references)
        matrix = _confusion_matrix(predictions, references, labels)
        hits = np.diag(matrix)
        support = matrix.sum(axis=1)
        recall = _divide(hits, support)
        precision = _divide(hits, matrix.sum(axis=0))
        f1 = _divide(2 * precision * recall, precision + recall)
        errors = predictions - references

        majority_counts, frequencies = np.unique(references, return_counts=True)
        # The squared error of a constant is a parabola around the mean count, so the best integer is a neighbour.
        mean = references.mean()
        central = min((int(np.floor(mean)), int(np.ceil(mean))), key=lambda count: _rmse(count - references))

        results = {
            "accuracy": float(np.mean(errors == 0)),
            "precision_macro": float(precision.mean()),
            "recall_macro": float(recall.mean()),
            "f1_macro": float(f1.mean()),
            "rmse": _rmse(errors),
            "mae": float(np.mean(np.abs(errors))),
            "off_by_one_accuracy": float(np.mean(np.abs(errors) <= 1)),
        }
        if expected_counts is not None:
            expected = np.asarray(expected_counts, dtype=np.float64)
            if expected.shape != references.shape:
                raise ValueError(f"Got {expected.size} expected_counts for {references.size} references.")
            results["rmse_expected"] = _rmse(expected - references)
            results["mae_expected"] = float(np.mean(np.abs(expected - references)))
        return results | {
            "baseline_majority_count": int(majority_counts[frequencies.argmax()]),
            "baseline_majority_accuracy": float(frequencies.max() / references.size),
            "baseline_constant_count": central,
            "baseline_constant_rmse": _rmse(central - references),
            "num_samples": int(references.size),
            "labels": labels,
            "per_class": {
                count: {
                    "accuracy": float(recall[i]) if support[i] else None,
                    "rmse": _rmse(predictions[references == count] - count) if support[i] else None,
                    "support": int(support[i]),
                }
                for i, count in enumerate(labels)
            },
            "confusion_matrix": matrix.tolist(),
        }


def _check_labels(labels: list[int] | None, predictions: np.ndarray, references: np.ndarray) -> list[int]:
    """The count classes to report; given labels must cover the data, or rows would silently go missing."""
    seen = set(np.unique(predictions).tolist()) | set(np.unique(references).tolist())
    if labels is None:
        return sorted(seen)
    labels = [int(count) for count in labels]
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels has repeated counts: {labels}")
    missing = seen - set(labels)
    if missing:
        raise ValueError(f"Counts {sorted(missing)} occur in predictions or references but not in labels {labels}.")
    return labels


def _confusion_matrix(predictions: np.ndarray, references: np.ndarray, labels: list[int]) -> np.ndarray:
    index = {count: i for i, count in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    rows = [index[count] for count in references.tolist()]
    columns = [index[count] for count in predictions.tolist()]
    np.add.at(matrix, (rows, columns), 1)
    return matrix


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio that is 0 where the denominator is 0 (sklearn's zero_division=0)."""
    out = np.zeros(len(denominator), dtype=np.float64)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


def _rmse(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(errors, dtype=np.float64))))
