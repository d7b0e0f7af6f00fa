"""``train.run --profile``: a torch.profiler trace of the chosen steps and a summary of where a step's time goes."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import TINY_CONFIGS
from train.profiling import kernel_busy_seconds, parse_window
from train.run import main as train_main


def args(dataset, out, *extra: str) -> list[str]:
    return ["--dataset", str(dataset), "--model_name_or_path", str(TINY_CONFIGS / "tiny-resnet"),
            "--output_dir", str(out), "--num_train_epochs", "1", "--per_device_train_batch_size", "4",
            "--dataloader_num_workers", "0", "--max_train_samples", "24", "--max_eval_samples", "8",
            "--save_strategy", "no", "--load_best_model_at_end", "false", "--logging_steps", "1", *extra]


def test_profile_writes_a_trace_of_the_window_and_a_summary(tiny_dataset, tmp_path, caplog, one_torch_thread):
    with caplog.at_level(logging.INFO, logger="train.profiling"):
        assert train_main(args(tiny_dataset, tmp_path, "--profile", "--profile_steps", "2-4")) == 0
    traces = list((tmp_path / "profile").glob("rank0.*.pt.trace.json"))
    assert len(traces) == 1
    events = json.loads(traces[0].read_text())["traceEvents"]
    names = [e.get("name", "") for e in events if e.get("ph") == "X"]
    assert names.count("train/forward_backward") == 3 and names.count("train/optimizer") == 3
    assert sum(name.startswith("ProfilerStep#") for name in names) == 3
    assert any(name.startswith("enumerate(DataLoader)") for name in names)
    assert any(name == "aten::convolution" for name in names)

    report = (tmp_path / "profile.md").read_text()
    assert report.startswith("# Training profile: optimizer steps 2-4")
    for part in ("data wait", "forward-backward", "optimizer", "whole step", "images/s", "Top operators by self CPU"):
        assert part in report
    shares = [float(line.split("|")[3].strip().rstrip("%")) for line in report.splitlines()
              if line.startswith(("| data wait", "| forward-backward", "| optimizer", "| the rest"))]
    assert len(shares) == 4 and sum(shares) == pytest.approx(100, abs=0.5)
    assert "aten::" in report  # real operators, ranked
    assert report in caplog.text


def test_in_a_sagemaker_job_the_profile_goes_to_the_uploaded_output_folder(tiny_dataset, tmp_path, monkeypatch,
                                                                           one_torch_thread):
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(tmp_path / "output-data"))
    assert train_main(args(tiny_dataset, tmp_path / "out", "--profile", "--profile_steps", "2-2")) == 0
    assert (tmp_path / "output-data" / "profile.md").read_text().startswith("# Training profile: optimizer steps 2-2")
    assert len(list((tmp_path / "output-data" / "profile").glob("rank0.*.pt.trace.json"))) == 1
    assert not (tmp_path / "out" / "profile.md").exists()


def test_a_window_the_run_does_not_reach_is_refused(tiny_dataset, tmp_path, capsys):
    assert train_main(args(tiny_dataset, tmp_path, "--profile", "--profile_steps", "9-12")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "error: --profile_steps 9-12: this run has only 6 optimizer steps"


@pytest.mark.parametrize("text", ["0-3", "5-2", "three", "2-"])
def test_bad_windows_are_refused(text):
    with pytest.raises(ValueError, match="--profile_steps"):
        parse_window(text)


def test_kernel_time_counts_overlapping_kernels_once(tmp_path):
    trace = tmp_path / "t.pt.trace.json"
    trace.write_text(json.dumps({"traceEvents": [
        {"cat": "kernel", "ts": 0, "dur": 10}, {"cat": "kernel", "ts": 5, "dur": 10},
        {"cat": "gpu_memcpy", "ts": 30, "dur": 5}, {"cat": "cpu_op", "ts": 0, "dur": 100}]}))
    assert kernel_busy_seconds(trace) == pytest.approx(20e-6)
