"""The counting metric against small hand-computed examples, and the helpers that log and report it."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import python_env
from core.labels import counts_of as label_counts
from train.metrics import flatten, format_table, load

# Eight images over counts 0..5; count 4 is only ever predicted.
REFERENCES = [0, 1, 1, 2, 3, 3, 3, 5]
PREDICTIONS = [0, 1, 2, 2, 3, 2, 5, 4]
# errors = predictions - references = [0, 0, 1, 0, 0, -1, 2, -1]


@pytest.fixture(scope="module")
def metric():
    return load()


@pytest.fixture(scope="module")
def results(metric) -> dict:
    return metric.compute(predictions=PREDICTIONS, references=REFERENCES)


def test_overall_accuracy_and_count_errors(results):
    assert results["num_samples"] == 8
    assert results["accuracy"] == pytest.approx(4 / 8)
    assert results["rmse"] == pytest.approx(math.sqrt(7 / 8))  # squares 0+0+1+0+0+1+4+1 = 7
    assert results["mae"] == pytest.approx(5 / 8)  # 0+0+1+0+0+1+2+1 = 5
    assert results["off_by_one_accuracy"] == pytest.approx(7 / 8)  # all but the error of 2


def test_confusion_matrix_rows_are_true_counts(results):
    assert results["labels"] == [0, 1, 2, 3, 4, 5]  # sorted union of references and predictions
    assert results["confusion_matrix"] == [
        [1, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 1],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0],
    ]


def test_macro_precision_recall_f1_count_empty_classes_as_zero(results):
    # recall    per class 0..5: 1, 1/2, 1, 1/3, 0 (no images), 0
    # precision per class 0..5: 1, 1, 1/3 (3 predicted 2s, 1 right), 1, 0, 0 (no predicted 5 is right)
    # f1 = 2pr / (p + r):       1, 2/3, 1/2, 1/2, 0, 0
    assert results["recall_macro"] == pytest.approx((1 + 1 / 2 + 1 + 1 / 3) / 6)
    assert results["precision_macro"] == pytest.approx((1 + 1 + 1 / 3 + 1) / 6)
    assert results["f1_macro"] == pytest.approx((1 + 2 / 3 + 1 / 2 + 1 / 2) / 6)


def test_per_class_accuracy_and_rmse_are_over_the_true_count(results):
    per_class = results["per_class"]
    assert per_class[1] == {"accuracy": 0.5, "rmse": pytest.approx(math.sqrt(1 / 2)), "support": 2}  # predicted 1, 2
    assert per_class[3] == {"accuracy": pytest.approx(1 / 3), "rmse": pytest.approx(math.sqrt(5 / 3)), "support": 3}
    assert per_class[5] == {"accuracy": 0.0, "rmse": 1.0, "support": 1}  # predicted 4
    assert per_class[4] == {"accuracy": None, "rmse": None, "support": 0}  # predicted, but no image holds 4


def test_constant_baselines(results):
    # Count 3 is the most frequent (3 of 8 images).
    assert results["baseline_majority_count"] == 3
    assert results["baseline_majority_accuracy"] == pytest.approx(3 / 8)
    # Mean count 18 / 8 = 2.25, nearest integer 2: squared distances 4+1+1+0+1+1+1+9 = 18, RMSE sqrt(18 / 8) = 1.5.
    # Always predicting the majority count 3 would be worse: 9+4+4+1+0+0+0+4 = 22.
    assert results["baseline_constant_count"] == 2
    assert results["baseline_constant_rmse"] == pytest.approx(1.5)


def test_baseline_ties_pick_the_smaller_count_and_the_central_count_need_not_occur(metric):
    tied = metric.compute(predictions=[1, 1, 1, 1], references=[1, 1, 2, 2])
    # 1 and 2 are equally frequent; the mean 1.5 is equally far from both, each with RMSE sqrt((0+0+1+1) / 4).
    assert (tied["baseline_majority_count"], tied["baseline_majority_accuracy"]) == (1, 0.5)
    assert (tied["baseline_constant_count"], tied["baseline_constant_rmse"]) == (1, pytest.approx(math.sqrt(0.5)))
    apart = metric.compute(predictions=[0, 4], references=[0, 4])
    assert (apart["baseline_constant_count"], apart["baseline_constant_rmse"]) == (2, 2.0)


def test_expected_counts_are_scored_without_rounding(metric):
    expected = [0.5, 1.0, 1.5, 2.0, 3.0, 2.5, 3.5, 4.0]
    # errors 0.5, 0, 0.5, 0, 0, -0.5, 0.5, -1: squares sum to 2.0, absolute values to 3.0.
    # Rounding half to even first would give errors 0, 0, 1, 0, 0, -1, 1, -1 and RMSE sqrt(4 / 8) instead.
    results = metric.compute(predictions=PREDICTIONS, references=REFERENCES, expected_counts=expected)
    assert results["rmse_expected"] == pytest.approx(math.sqrt(2.0 / 8))
    assert results["mae_expected"] == pytest.approx(3.0 / 8)
    assert results["rmse"] == pytest.approx(math.sqrt(7 / 8))


def test_expected_metrics_only_when_expected_counts_given(results):
    assert "rmse_expected" not in results and "mae_expected" not in results


def test_given_labels_keep_absent_classes_in_their_order(metric):
    results = metric.compute(predictions=[1, 1], references=[1, 2], labels=[3, 2, 1, 0])
    assert results["labels"] == [3, 2, 1, 0]
    assert results["confusion_matrix"] == [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert list(results["per_class"]) == [3, 2, 1, 0]
    assert results["per_class"][0] == {"accuracy": None, "rmse": None, "support": 0}
    # Only class 1 scores: recall 1, precision 1/2 (two predicted 1s), f1 2/3; the other three classes score 0.
    assert results["recall_macro"] == pytest.approx(1 / 4)
    assert results["precision_macro"] == pytest.approx(1 / 8)
    assert results["f1_macro"] == pytest.approx(2 / 3 / 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"predictions": [1, 2, 3], "references": [1, 2]}, "Mismatch in the number of predictions"),
        ({"predictions": [], "references": []}, "No images to score"),
        ({"predictions": [1, 2], "references": [1, 2], "expected_counts": [1.0]}, "1 expected_counts for 2"),
        ({"predictions": [1, 7], "references": [1, 2], "labels": [0, 1, 2]}, r"Counts \[7\] occur"),
        ({"predictions": [1], "references": [1], "labels": [1, 1]}, "repeated"),
    ],
)
def test_bad_inputs_raise_clear_errors(metric, kwargs, message):
    with pytest.raises(ValueError, match=message):
        metric.compute(**kwargs)


def test_label_counts_read_overflow_names():
    assert label_counts(["1", "2", "3", "4", "5"]) == [1, 2, 3, 4, 5]
    assert label_counts(["0", "1", "2", "3", "4", "5+"]) == [0, 1, 2, 3, 4, 5]


def test_flatten_keeps_scalars_and_per_class_values(results):
    flat = flatten(results)
    assert all(type(value) is float for value in flat.values())
    assert flat["accuracy"] == 0.5 and flat["baseline_constant_rmse"] == 1.5 and flat["num_samples"] == 8.0
    assert flat["accuracy_count_3"] == pytest.approx(1 / 3) and flat["rmse_count_5"] == 1.0
    assert "accuracy_count_4" not in flat and "rmse_count_4" not in flat  # no image holds 4 items
    assert not {"labels", "per_class", "confusion_matrix"} & flat.keys()


def test_format_table_shows_overflow_names_and_baselines(metric):
    names = ["0", "1", "2", "3", "4", "5+"]
    results = metric.compute(predictions=[0, 2, 3, 3, 5], references=[0, 1, 3, 5, 5], labels=label_counts(names))
    table = format_table(results, names)
    # 3 of 5 right; squared errors 0+1+0+4+0 = 5, RMSE 1.
    assert table.startswith("| Accuracy (%) | RMSE |\n|---|---|\n| 60.00 | 1.000 |\n")
    # The two 5+ images were predicted 3 and 5: accuracy 1/2, RMSE sqrt(4 / 2).
    assert table.endswith(
        "| Quantity | Per class accuracy (%) | Per class RMSE |\n|---|---|---|\n"
        "| 0 | 100.0 | 0.000 |\n| 1 | 0.0 | 1.000 |\n| 2 | – | – |\n| 3 | 100.0 | 0.000 |\n| 4 | – | – |\n"
        "| 5+ | 50.0 | 1.414 |\n"
    )
    # 5 is the most frequent count (2 of 5); the mean 14 / 5 = 2.8 rounds to 3: RMSE sqrt((9+4+0+4+4) / 5) = 2.049.
    assert "always predicting 5+ (the most frequent count) is 40.00% accurate" in table
    assert "always predicting 3 (the integer nearest the mean count) has RMSE 2.049" in table
    assert format_table(json.loads(json.dumps(results)), names) == table  # results read back from a JSON file


def test_format_table_without_names_shows_counts(results):
    assert "| 5 | 0.0 | 1.000 |" in format_table(results)


def test_load_works_offline_from_another_directory(tmp_path):
    """A fresh Hugging Face cache and no Hub access: the metric comes from the project folder alone."""
    code = (
        "import json; from train.metrics import load; "
        "print(json.dumps(load().compute(predictions=[1, 2, 4], references=[1, 3, 4])))"
    )
    env = python_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert results["accuracy"] == pytest.approx(2 / 3)
    assert results["rmse"] == pytest.approx(math.sqrt(1 / 3))
