"""``train.run --synthetic_pretrain N``: the network is first trained on N generated synthetic bins, the run starts
from that model, a finished pre-training is reused, and a folder made with other settings is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import ROOT
from train import pretrain
from train.run import main as train_main

QUICK = ["--model_name_or_path", str(ROOT / "train" / "configs" / "small-real-resnet"), "--image_size", "32",
         "--max_steps", "2", "--per_device_train_batch_size", "8", "--dataloader_num_workers", "0",
         "--save_strategy", "no", "--eval_strategy", "no", "--load_best_model_at_end", "false", "--torch_threads", "1"]


def pretrain_run(dataset: Path, out: Path, bins: int, *extra: str) -> int:
    return train_main(["--dataset", str(dataset), "--output_dir", str(out), "--synthetic_pretrain", str(bins),
                       *QUICK, *extra])


def test_the_run_starts_from_the_model_pretrained_on_synthetic_bins(tiny_dataset, tmp_path, one_torch_thread,
                                                                     monkeypatch):
    out = tmp_path / "model"
    assert pretrain_run(tiny_dataset, out, 24, "--learning_rate", "0") == 0  # no step moves a weight
    work = out / "synthetic-pretrain"
    report = json.loads((work / "dataset" / "build_report.json").read_text())
    assert report["kept"] == 24 and report["per_split"]["test"] == 0
    assert not (work / "bins").exists(), "the bins are removed once their dataset is built"
    pretrained = work / "model"
    assert json.loads((pretrained / "run_args.json").read_text())["data"]["dataset"] == str(work / "dataset")
    assert json.loads((pretrained / "preprocessor_config.json").read_text())["size"] == {"height": 32, "width": 32}
    before, after = load_file(pretrained / "model.safetensors"), load_file(out / "model.safetensors")
    backbone = [name for name in before if not name.startswith("classifier") and "running" not in name
                and "num_batches" not in name]
    assert backbone and all((before[name] == after[name]).all() for name in backbone)
    assert json.loads((out / "run_args.json").read_text())["model"]["model_name_or_path"] == str(pretrained)
    assert "Pre-trained first on 24 synthetic bins" in (out / "README.md").read_text()

    # Run again: the finished pre-training is reused, not redone
    stamp = (pretrained / "model.safetensors").stat().st_mtime_ns
    assert pretrain_run(tiny_dataset, out, 24, "--overwrite", "false") == 0
    assert (pretrained / "model.safetensors").stat().st_mtime_ns == stamp

    # A run killed after the dataset was built: the next one trains from that dataset, drawing no bins again
    (pretrained / "all_results.json").unlink()
    monkeypatch.setattr(pretrain.synthetic, "generate", lambda *args, **kwargs: pytest.fail("bins drawn again"))
    assert pretrain_run(tiny_dataset, out, 24) == 0
    assert (pretrained / "all_results.json").is_file()


def test_a_pretraining_folder_with_other_settings_is_refused(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "model"
    (out / "synthetic-pretrain").mkdir(parents=True)
    (out / "synthetic-pretrain" / "settings.json").write_text(json.dumps({"synthetic_bins": 9000}))
    assert pretrain_run(tiny_dataset, out, 24) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "synthetic-pretrain was made with other pre-training settings" in error[0]
    assert not (out / "synthetic-pretrain" / "bins").exists(), "nothing generated into a folder it refused"


def test_a_negative_number_of_bins_is_refused(tiny_dataset, tmp_path, capsys):
    assert pretrain_run(tiny_dataset, tmp_path / "model", -1) == 2
    assert capsys.readouterr().err.startswith("error: --synthetic_pretrain must be a number of bins >= 0")
