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
STAND_INS = {"small-real-cpu.json": None, "synthetic-pretrain-cpu.json": None, "vit-base-abid.json": "tiny-vit",
             "resnet-50-abid.json": "tiny-resnet"}
OBJECTIVES = {"small-real-cpu.json": "cross_entropy", "synthetic-pretrain-cpu.json": "cross_entropy",
              "vit-base-abid.json": "ordinal", "resnet-50-abid.json": "ordinal"}
QUICK = ["--max_steps", "2", "--per_device_train_batch_size", "8", "--dataloader_num_workers", "0",
         "--max_train_samples", "16", "--max_eval_samples", "24", "--save_strategy", "no", "--eval_strategy", "no",
         "--load_best_model_at_end", "false"]


def test_every_recipe_is_listed_and_parses():
    assert sorted(p.name for p in RECIPES.glob("*.json")) == sorted(STAND_INS)
    for name in STAND_INS:
        data, model, counting, out, training = parse_args(["--config", str(RECIPES / name)])
        assert counting.objective == OBJECTIVES[name] and counting.calibrate and counting.audit
        assert model.model_name_or_path and training.num_train_epochs > 0
    small = parse_args(["--config", str(RECIPES / "small-real-cpu.json")])
    assert Path(small[1].model_name_or_path).is_dir(), "the CPU recipe's model config ships in train/configs"
    pretrain = parse_args(["--config", str(RECIPES / "synthetic-pretrain-cpu.json")])
    assert pretrain[1].model_name_or_path == small[1].model_name_or_path, "pre-training must build the same network"
    assert pretrain[2].image_size == small[2].image_size


@pytest.mark.parametrize("recipe", sorted(STAND_INS))
def test_recipe_trains_a_few_steps(recipe, tiny_dataset, tmp_path, one_torch_thread):
    out = tmp_path / "model"
    swap = ["--model_name_or_path", str(TINY_CONFIGS / STAND_INS[recipe])] if STAND_INS[recipe] else []
    if STAND_INS[recipe] == "tiny-resnet":
        swap += ["--image_size", "64"]  # the recipe's full-view 224 px resize, smaller: the tiny model is what's tested
    if "synthetic_pretrain" in json.loads((RECIPES / recipe).read_text()):
        swap += ["--synthetic_pretrain", "24"]  # the recipe's pre-training path, on a few synthetic bins
    assert train_main(["--config", str(RECIPES / recipe), "--dataset", str(tiny_dataset), "--output_dir", str(out),
                       *swap, *QUICK]) == 0
    metrics = json.loads((out / "all_results.json").read_text())
    assert "calibration_temperature" in metrics and "test_ece" in metrics and "audit_false_alarm" in metrics
    for name in ("verify.json", "calibration.png", "audit.png", "model.safetensors"):
        assert (out / name).is_file(), name
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["counting"]["objective"] == OBJECTIVES[recipe] and run_args["output"]["config"].endswith(recipe)
    assert run_args["training"]["max_steps"] == 2, "the command line overrides the recipe"


def test_real_recipe_fine_tunes_the_synthetic_pretrained_model(synthetic_bucket, tiny_dataset, tmp_path,
                                                               one_torch_thread):
    """The two-step path: pre-train on synthetic bins (counts 0-5), then the real-bin recipe from that model on a
    dataset with 1-5 items: re-headed to the new counts, every backbone weight taken from the pre-trained model."""
    import torch
    from safetensors.torch import load_file

    from data.build import main as build

    pretrained, real_like, out = tmp_path / "pretrained", tmp_path / "one-to-five", tmp_path / "model"
    assert train_main(["--config", str(RECIPES / "synthetic-pretrain-cpu.json"), "--dataset", str(tiny_dataset),
                       "--output_dir", str(pretrained), *QUICK]) == 0
    assert build(["--source", str(synthetic_bucket), "--output", str(real_like), "--min_count", "1",
                  "--shorter_side", "160", "--num_proc", "1"]) == 0
    assert train_main(["--config", str(RECIPES / "small-real-cpu.json"), "--dataset", str(real_like),
                       "--model_name_or_path", str(pretrained), "--output_dir", str(out), *QUICK,
                       "--synthetic_pretrain", "0",  # this test pre-trains by hand
                       "--learning_rate", "0"]) == 0  # no step moves a weight: what was loaded is what is saved
    config = json.loads((out / "config.json").read_text())
    assert list(config["id2label"].values()) == ["1", "2", "3", "4", "5"]
    before, after = load_file(pretrained / "model.safetensors"), load_file(out / "model.safetensors")
    backbone = [name for name in before if not name.startswith("classifier") and "running" not in name
                and "num_batches" not in name]
    assert backbone and all((before[name] == after[name]).all() for name in backbone)
    head = "classifier.1.weight"
    assert after[head].shape[0] == 5 and before[head].shape[0] == 6
    temperature = json.loads((out / "all_results.json").read_text()).get("calibration_temperature", 1.0)
    for key in (head, "classifier.1.bias"):  # counts 1-5 keep their rows (divided by the new run's temperature)
        assert torch.allclose(after[key] * temperature, before[key][1:], atol=1e-5), key
