"""Training figures are written as real PNGs, also for degenerate inputs that happen early in a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from train.plots import plot_confusion_matrix, plot_training_curves

HISTORY = [
    {"loss": 1.7, "learning_rate": 5e-4, "epoch": 0.5, "step": 10},
    {"loss": 1.4, "learning_rate": 4e-4, "epoch": 1.0, "step": 20},
    {
        "eval_loss": 1.5,
        "eval_accuracy": 0.31,
        "eval_rmse": 1.4,
        "eval_rmse_expected": 1.1,
        "eval_baseline_majority_accuracy": 0.25,
        "eval_baseline_constant_rmse": 1.3,
        "epoch": 1.0,
        "step": 20,
    },
    {"loss": 1.2, "learning_rate": 2e-4, "epoch": 1.5, "step": 30},
    {
        "eval_loss": 1.3,
        "eval_accuracy": 0.42,
        "eval_rmse": 1.1,
        "eval_rmse_expected": 0.9,
        "eval_baseline_majority_accuracy": 0.25,
        "eval_baseline_constant_rmse": 1.3,
        "epoch": 2.0,
        "step": 40,
    },
    {"train_runtime": 12.0, "train_loss": 1.4, "epoch": 2.0, "step": 40},
]


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_confusion_matrix_png(tmp_path):
    matrix = [[5, 1, 0], [2, 7, 1], [0, 3, 4]]
    path = plot_confusion_matrix(matrix, ["0", "1", "2+"], tmp_path / "figures" / "confusion.png", title="Eval")
    assert path == tmp_path / "figures" / "confusion.png"
    assert_png(path)


@pytest.mark.parametrize(
    ("matrix", "labels"),
    [([[3]], [1]), ([[0, 0], [0, 0]], [0, 1]), ([[2, 0], [0, 0]], ["0", "1"])],
    ids=["one class", "no images", "class without images"],
)
def test_confusion_matrix_degenerate_inputs_still_draw(tmp_path, matrix, labels):
    assert_png(plot_confusion_matrix(matrix, labels, tmp_path / "confusion.png"))


@pytest.mark.parametrize(("matrix", "labels"), [([], []), ([[1, 0], [0, 1]], [0, 1, 2]), ([[1, 2, 3]], [0])])
def test_confusion_matrix_without_a_class_per_row_raises(tmp_path, matrix, labels):
    with pytest.raises(ValueError, match="one row per label"):
        plot_confusion_matrix(matrix, labels, tmp_path / "confusion.png")
    assert not (tmp_path / "confusion.png").exists()


def test_training_curves_png(tmp_path):
    path = plot_training_curves(HISTORY, tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    assert_png(path)


@pytest.mark.parametrize(
    "history",
    [[], HISTORY[:2], [HISTORY[2]], [{"loss": float("nan"), "step": 1}]],
    ids=["empty", "no eval yet", "eval only", "nan loss"],
)
def test_training_curves_with_missing_keys_still_draw(tmp_path, history):
    assert_png(plot_training_curves(history, tmp_path / "curves.png"))
