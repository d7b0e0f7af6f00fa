"""train.run across processes: a run killed with SIGKILL resumes to the uninterrupted run's result, two processes
evaluate each image once, and the same seed gives the same losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_from_disk

from tests.conftest import python_env, run_train, train_args
from train.run import main as train_main


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_dataset, tmp_path):
    extra = ("--num_train_epochs", "3", "--save_strategy", "steps", "--save_steps", "4", "--eval_strategy", "steps",
             "--eval_steps", "4", "--save_total_limit", "10")
    reference = run_train(train_args(tiny_dataset, tmp_path / "reference", "tiny-resnet", *extra))
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "train.run", *train_args(tiny_dataset, out, "tiny-resnet", *extra)]
    process = subprocess.Popen(command,
                               env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("checkpoint-*/trainer_state.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "all_results.json").exists(), "the run finished before it could be killed"
    resumed = run_train(train_args(tiny_dataset, out, "tiny-resnet", *extra))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr

    def final_state(path: Path) -> dict:
        state = json.loads(max(path.glob("checkpoint-*/trainer_state.json"),
                               key=lambda p: int(p.parent.name.split("-")[1])).read_text())
        return {"global_step": state["global_step"], **json.loads((path / "all_results.json").read_text())}

    expected, got = final_state(tmp_path / "reference"), final_state(out)
    assert got["global_step"] == expected["global_step"] == 18
    for key in ("eval_loss", "eval_accuracy", "eval_rmse", "test_loss", "test_accuracy", "test_rmse_expected"):
        assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-5), key


def test_two_processes_evaluate_each_image_once(tiny_dataset, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]
    result = run_train(train_args(tiny_dataset, out, "tiny-resnet", "--num_train_epochs", "1"), launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 0 of 2" in result.stderr and "process 1 of 2" in result.stderr
    metrics = json.loads((out / "all_results.json").read_text())
    dataset = load_from_disk(str(tiny_dataset))
    assert metrics["eval_num_samples"] == min(32, len(dataset["validation"]))
    assert metrics["test_num_samples"] == min(32, len(dataset["test"]))
    assert result.stdout.count("test results") == 1  # one process reports and writes
    assert (out / "model.safetensors").is_file()


def test_same_seed_same_losses_and_learning(tiny_dataset, tmp_path):
    histories = []
    for run in ("a", "b"):
        args = train_args(tiny_dataset, tmp_path / run, "tiny-resnet", "--dataloader_num_workers", "0",
                          "--num_train_epochs", "3", "--eval_strategy", "no", "--save_strategy", "no",
                          "--load_best_model_at_end", "False", "--logging_steps", "1")
        assert train_main(args) == 0
        state = json.loads((tmp_path / run / "all_results.json").read_text())
        histories.append(state)
    assert histories[0]["train_loss"] == histories[1]["train_loss"]
    assert histories[0]["test_loss"] == histories[1]["test_loss"]
