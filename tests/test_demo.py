"""The README's main job, `python -m demo`, at a reduced size: every stage's artifacts, and nothing left running."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import psutil

from tests.conftest import python_env


def test_demo_runs_every_stage_and_stops_its_processes(tmp_path):
    work = tmp_path / "demo"
    command = [sys.executable, "-m", "demo", "--workdir", str(work), "--num_images", "160", "--epochs", "1",
               "--num_queries", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=python_env())
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout

    # data: synthetic bucket behind the local S3 endpoint, built into a dataset
    assert (work / "bucket" / "bin-images" / "00001.jpg").is_file()
    uploaded = re.search(r"uploaded (\d+) files to s3://", out)
    assert uploaded and int(uploaded.group(1)) >= 2 * 160 and "--source s3://" in out
    for name in ("dataset_dict.json", "build_report.json", "README.md", "class_histogram.png"):
        assert (work / "dataset" / name).is_file(), name
    # train: model, metrics table, plots
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "results.md", "confusion_matrix.png",
                 "training_curves.png", "README.md"):
        assert (work / "model" / name).is_file(), name
    assert "| Quantity | Per class accuracy (%) | Per class RMSE |" in out
    # inference: pipeline with every count, local endpoint with and without an expected quantity
    assert "(6 counts scored)" in out
    assert "POST /invocations image/jpeg" in out
    assert len(re.findall(r"verdict (match|mismatch|uncertain)", out)) == 2

    # every process it started is gone: nothing answers on their ports, no process names them
    ports = [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", out)]
    assert len(set(ports)) == 2  # the local S3 endpoint and the local model endpoint
    for port in set(ports):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
        for process in psutil.process_iter(["cmdline"]):
            assert str(port) not in " ".join(process.info["cmdline"] or []), process.info["cmdline"]

    # re-running reuses what is built
    again = subprocess.run(command, capture_output=True, text=True, timeout=900, env=python_env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing the dataset" in again.stdout and "reusing the model" in again.stdout
