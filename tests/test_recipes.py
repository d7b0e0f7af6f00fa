"""The shipped recipes (train/recipes/*.json) parse, and each trains a few steps end to end with a tiny model from
config swapped in (no Hub download), writing the calibrated model and its verify thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_CONFIGS
from train.args import parse_args
from train.run import main as train_main

RECIPES = ROOT / "train" / "recipes"
# recipe -> the tiny stand-in of its model (the CPU recipe's own config is small already)
STAND_INS = {"small-real-cpu.json": None, "vit-base-abid.json": "tiny-vit", "resnet-50-abid.json": "tiny-resnet"}
OBJECTIVES = {"small-real-cpu.json": "cross_entropy", "vit-base-abid.json": "ordinal", "resnet-50-abid.json": "ordinal"}


def test_every_recipe_is_listed_and_parses():
    assert sorted(p.name for p in RECIPES.glob("*.json")) == sorted(STAND_INS)
    for name in STAND_INS:
        data, model, counting, out, training = parse_args(["--config", str(RECIPES / name)])
        assert counting.objective == OBJECTIVES[name] and counting.calibrate and counting.audit
        assert model.model_name_or_path and training.num_train_epochs > 0
    small = parse_args(["--config", str(RECIPES / "small-real-cpu.json")])
    assert Path(small[1].model_name_or_path).is_dir(), "the CPU recipe's model config ships in train/configs"


@pytest.mark.parametrize("recipe", sorted(STAND_INS))
def test_recipe_trains_a_few_steps(recipe, tiny_dataset, tmp_path, one_torch_thread):
    out = tmp_path / "model"
    swap = ["--model_name_or_path", str(TINY_CONFIGS / STAND_INS[recipe])] if STAND_INS[recipe] else []
    if STAND_INS[recipe] == "tiny-resnet":
        swap += ["--image_size", "64"]  # the recipe's full-view 224 px resize, smaller: the tiny model is what's tested
    assert train_main(["--config", str(RECIPES / recipe), "--dataset", str(tiny_dataset), "--output_dir", str(out),
                       *swap, "--max_steps", "2", "--per_device_train_batch_size", "8",
                       "--dataloader_num_workers", "0", "--max_train_samples", "16", "--max_eval_samples", "24",
                       "--save_strategy", "no", "--eval_strategy", "no", "--load_best_model_at_end", "false"]) == 0
    metrics = json.loads((out / "all_results.json").read_text())
    assert "calibration_temperature" in metrics and "test_ece" in metrics and "audit_false_alarm" in metrics
    for name in ("verify.json", "calibration.png", "audit.png", "model.safetensors"):
        assert (out / name).is_file(), name
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["counting"]["objective"] == OBJECTIVES[recipe] and run_args["output"]["config"].endswith(recipe)
    assert run_args["training"]["max_steps"] == 2, "the command line overrides the recipe"
