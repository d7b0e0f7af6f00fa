"""The realism report: its statistics, its two-sample test (which must tell apart what differs and not what does not),
its pictures, and its command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data.realism import find_bins, realism_report, strap_spectrum, two_sample_test, wilson
from data.synthetic import generate
from tests.conftest import ROOT, python_env


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two small sets in the two layouts the report reads: a bucket (metadata/<id>.json) and count folders, the
    second made darker and sharper so that it differs measurably."""
    root = tmp_path_factory.mktemp("realism")
    generate(root / "bucket", 24, seed=1)
    other = root / "folders"
    generate(root / "raw", 24, seed=2)
    for image in sorted((root / "raw" / "bin-images").glob("*.jpg")):
        count = json.loads((root / "raw" / "metadata" / f"{image.stem}.json").read_text())["EXPECTED_QUANTITY"]
        (other / str(count)).mkdir(parents=True, exist_ok=True)
        with Image.open(image) as picture:
            picture.point(lambda v: v // 2).save(other / str(count) / image.name, quality=70)
    shutil.rmtree(root / "raw")
    return root / "bucket", other


def test_counts_come_from_metadata_or_the_folder_name(folders):
    bucket, other = folders
    for path, count in find_bins(bucket, 100, 0) + find_bins(other, 100, 0):
        assert isinstance(count, int) and 0 <= count <= 5, path
    assert len(find_bins(bucket, 10, 0)) == 10


def test_report_computes_its_numbers_and_writes_its_pictures(folders, tmp_path):
    bucket, other = folders
    report = realism_report(bucket, other, tmp_path, max_images=24)
    for name in report["files"]:
        assert (tmp_path / name).stat().st_size > 0, name
    for name in ("realism.png", "realism_stats.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.width > 300 and picture.height > 150
    assert report["grid_counts"] and all(0 <= c <= 5 for c in report["grid_counts"])
    real, synthetic = report["statistics"]["real"], report["statistics"]["synthetic"]
    assert real["mean_r"][1] > 1.5 * synthetic["mean_r"][1]  # the second set was darkened to half
    for stats in (real, synthetic):
        assert stats["width"][0] <= stats["width"][1] <= stats["width"][2]
    for test in report["two_sample_tests"].values():
        assert test["n"] == 48 and test["ci95"][0] <= test["accuracy"] <= test["ci95"][1]
    assert report["headline"]["accuracy"] > 0.9  # half as bright is easy to tell
    assert json.loads((tmp_path / "realism.json").read_text())["headline"] == report["headline"]
    assert "| statistics |" in (tmp_path / "realism.md").read_text()


def test_two_sample_test_is_near_chance_on_one_distribution_and_near_one_on_two():
    gen = np.random.default_rng(0)
    same = two_sample_test(gen.normal(size=(300, 5)), gen.normal(size=(300, 5)), seed=0)
    assert 0.4 < same["accuracy"] < 0.6 and same["ci95"][0] < 0.5 < same["ci95"][1]
    apart = two_sample_test(gen.normal(size=(300, 5)), gen.normal(1.5, 1, size=(300, 5)), seed=0)
    assert apart["accuracy"] > 0.9


def test_wilson_interval():
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson(100, 100)[1] == pytest.approx(1.0) and 0.95 < wilson(100, 100)[0] < 0.97


def test_strap_spectrum_finds_strands():
    rows = np.arange(350)
    strands = 128 + 60 * np.sin(2 * np.pi * rows / 6.0)  # a strand every 6 px: 350 / 6 ~ 58 cycles per height
    spectrum = strap_spectrum(Image.fromarray(np.repeat(strands[:, None], 470, 1).astype(np.uint8)))
    assert abs(int(spectrum[20:].argmax()) + 20 - 350 / 6 * 368 / 384) <= 3


def test_cli_writes_the_report_and_rejects_a_missing_folder(folders, tmp_path):
    bucket, other = folders
    command = [sys.executable, "-m", "data.realism", "--real", str(other), "--synthetic", str(bucket),
               "--out", str(tmp_path / "out"), "--max_images", "12"]
    result = subprocess.run(command, cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Two-sample test" in result.stdout and (tmp_path / "out" / "realism.png").is_file()
    command[command.index("--real") + 1] = str(tmp_path / "nowhere")
    result = subprocess.run(command, cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
