"""The README's main job, `python -m demo`, at a reduced size: every stage's artifacts, and nothing left running."""

from __future__ import annotations

import csv
import itertools
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from demo import DemoArguments
from tests.conftest import ABID_REAL, ABID_SAMPLE, ROOT, python_env

STEP = 25  # score every 25th listed real bin: the same code as for all 1,050, in a fraction of the time


def listed_subset(folder: Path) -> Path:
    """A labels.csv of every STEP-th row of abid-real's (both of its layouts), with absolute image paths, in
    ``folder/abid-real`` (no image is copied); the folder has no labels.csv when abid-real is absent."""
    subset = folder / "abid-real"
    subset.mkdir(parents=True)
    if (ABID_REAL / "labels.csv").is_file():
        with open(ABID_REAL / "labels.csv", newline="") as listing, open(subset / "labels.csv", "w", newline="") as out:
            reader = csv.DictReader(listing)
            writer = csv.DictWriter(out, reader.fieldnames)
            writer.writeheader()
            for row in itertools.islice(reader, 0, None, STEP):
                writer.writerow({**row, "path": str(ABID_REAL / row["path"])})
    return subset


def test_demo_runs_every_stage_and_stops_its_processes(tmp_path):
    work = tmp_path / "demo"
    listed = listed_subset(tmp_path)
    command = [sys.executable, "-m", "demo", "--workdir", str(work), "--num_images", "160", "--epochs", "1",
               "--num_queries", "2", "--real_bins", str(listed)]
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
    processor = json.loads((work / "model" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 96, "width": 96}  # the demo's resolution, which keeps it in 10 minutes
    counting = json.loads((work / "model" / "run_args.json").read_text())["counting"]
    recipe = json.loads((ROOT / "train" / "recipes" / "small-real-cpu.json").read_text())
    for name in ("crop_scale", "rotation_degrees", "color_jitter"):  # the real-bin recipe's augmentation
        assert counting[name] == recipe[name], name
    verify = json.loads((work / "model" / "verify.json").read_text())
    assert verify["target_false_alarm"] == DemoArguments().target_false_alarm < 0.05  # it checks bins unlike its own
    # inference: pipeline with every count, local endpoint with and without an expected quantity
    assert "(6 counts scored)" in out
    assert "POST /invocations image/jpeg" in out
    assert len(re.findall(r"verdict (match|mismatch|uncertain)", out)) == 2
    # summary: synthetic test bins, and the real sample beside the checkout (or a line saying it was skipped)
    assert "| synthetic test split |" in out
    assert "| real ABID sample (abid-sample, 0-5 items) |" in out or "real sample not found" in out
    if (listed / "labels.csv").is_file():
        with open(listed / "labels.csv", newline="") as listing:
            scored = sum(int(row["count"]) <= 5 for row in csv.DictReader(listing))
        assert f"| real ABID bins (abid-real, 0-5 items) | {scored} |" in out
    else:
        assert "real bins not found" in out

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


def test_summary_scores_the_real_sample_next_to_the_constant(tiny_model_dir, tiny_dataset, tmp_path):
    from demo import summary

    listed = listed_subset(tmp_path)
    lines = summary(tiny_model_dir, tiny_dataset, ABID_SAMPLE, listed).splitlines()
    assert lines[0].startswith("| bins | n | accuracy (%) | RMSE | RMSE, expected count | always 3")
    assert lines[2].startswith("| synthetic ")
    if (ABID_SAMPLE / "metadata").is_dir():
        counts = [json.loads(p.read_text())["EXPECTED_QUANTITY"] for p in sorted((ABID_SAMPLE / "metadata").glob("*"))
                  if (ABID_SAMPLE / "bin-images" / f"{p.stem}.jpg").is_file()]
        known = [c for c in counts if c <= 5]
        cells = [cell.strip() for cell in lines[3].strip("|").split("|")]
        assert cells[0] == "real ABID sample (abid-sample, 0-5 items)" and int(cells[1]) == len(known)
        assert 0 <= float(cells[2]) <= 100 and float(cells[3]) >= 0 and 0 <= float(cells[4]) <= 5
        assert float(cells[5]) == round(100 * known.count(3) / len(known), 1)
    if (listed / "labels.csv").is_file():
        with open(listed / "labels.csv", newline="") as listing:
            known = [int(row["count"]) for row in csv.DictReader(listing) if int(row["count"]) <= 5]
        cells = [cell.strip() for cell in lines[4].strip("|").split("|")]
        assert cells[0] == "real ABID bins (abid-real, 0-5 items)" and int(cells[1]) == len(known)
        assert float(cells[5]) == round(100 * known.count(3) / len(known), 1)
    missing = summary(tiny_model_dir, tiny_dataset, tmp_path / "absent", tmp_path / "absent").splitlines()
    assert missing[-2].startswith("(real sample not found at ") and len(missing) == 5
    assert missing[-1].startswith("(real bins not found at ")
