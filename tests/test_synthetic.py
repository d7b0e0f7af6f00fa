"""The synthetic ABID generator: bucket layout, the real metadata schema, determinism, class balance, resume, CLI."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image, JpegImagePlugin

from data.synthetic import ABID_COUNT_SHARE, bin_id, count_weights, generate, make_bin
from tests.conftest import ROOT, python_env


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def counts(folder: Path) -> list[int]:
    return [json.loads(p.read_text())["EXPECTED_QUANTITY"] for p in sorted((folder / "metadata").glob("*.json"))]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """300 bins with seed 0, written once for the tests that only read them."""
    folder = tmp_path_factory.mktemp("synthetic")
    generate(folder, 300, seed=0)
    return folder


def test_bucket_layout_and_ids(dataset):
    assert sorted(p.name for p in dataset.iterdir()) == ["bin-images", "metadata", "synthetic.json"]
    assert json.loads((dataset / "synthetic.json").read_text())["seed"] == 0
    ids = [f"{i:05d}" for i in range(1, 301)]
    assert sorted(p.name for p in (dataset / "bin-images").iterdir()) == [f"{i}.jpg" for i in ids]
    assert sorted(p.name for p in (dataset / "metadata").iterdir()) == [f"{i}.json" for i in ids]
    with Image.open(dataset / "bin-images" / "00001.jpg") as image:
        assert image.format == "JPEG" and image.mode == "RGB"
    assert bin_id(0) == "00001" and bin_id(99998) == "99999" and bin_id(123455) == "123456"


def test_metadata_matches_the_real_schema(dataset, abid_sample):
    real = json.loads((abid_sample / "metadata" / "00001.json").read_text())
    real_item = next(iter(real["BIN_FCSKU_DATA"].values()))
    real_empty = json.loads((abid_sample / "metadata" / "00089.json").read_text())
    assert real_empty["EXPECTED_QUANTITY"] == 0
    documents = [json.loads(p.read_text()) for p in sorted((dataset / "metadata").glob("*.json"))]
    assert any(len(d["BIN_FCSKU_DATA"]) < d["EXPECTED_QUANTITY"] for d in documents), "no ASIN with several units"
    for document in documents:
        assert document.keys() == real.keys()
        assert document["EXPECTED_QUANTITY"] == sum(item["quantity"] for item in document["BIN_FCSKU_DATA"].values())
        if document["EXPECTED_QUANTITY"] == 0:
            assert document == real_empty
        for asin, item in document["BIN_FCSKU_DATA"].items():
            assert item.keys() == real_item.keys()
            assert item["asin"] == asin and re.fullmatch(r"B0[0-9A-Z]{8}", asin)
            assert isinstance(item["quantity"], int) and item["quantity"] >= 1
            assert item["name"] and item["normalizedName"]
            for key in ("height", "length", "width", "weight"):
                assert item[key].keys() == real_item[key].keys() and item[key]["value"] > 0
                assert item[key]["unit"] == real_item[key]["unit"]


def test_same_seed_gives_identical_bytes_whatever_num_proc(tmp_path):
    generate(tmp_path / "a", 12, seed=7)
    generate(tmp_path / "b", 12, seed=7, num_proc=2)
    generate(tmp_path / "c", 12, seed=8)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    different = files(tmp_path / "c")
    assert all(different[name] != data for name, data in files(tmp_path / "a").items() if name.endswith(".jpg"))


def test_class_balance_follows_abid(dataset):
    found = Counter(counts(dataset))
    assert set(found) <= set(range(6))
    for count, share in enumerate(ABID_COUNT_SHARE):
        assert abs(found[count] / 300 - share) < 0.07, (count, found)


def test_image_sizes_vary_around_abid_median(dataset):
    sizes = []
    for path in sorted((dataset / "bin-images").glob("*.jpg")):
        with Image.open(path) as image:
            sizes.append(image.size)
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    assert len(set(sizes)) > 200
    assert all(300 <= side <= 1100 for side in widths + heights)
    assert 420 < statistics.median(widths) < 530 and 310 < statistics.median(heights) < 400
    assert any(h > w for w, h in sizes) and any(w > 1.3 * h for w, h in sizes)


def test_resume_writes_only_missing_bins(tmp_path):
    assert generate(tmp_path, 8, seed=3) == 8
    before = files(tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*")}
    (tmp_path / "bin-images" / "00002.jpg").unlink()
    (tmp_path / "metadata" / "00005.json").unlink()
    assert generate(tmp_path, 8, seed=3) == 2
    assert files(tmp_path) == before
    untouched = [p for p in stamps if p.stem not in ("00002", "00005")]
    assert all(p.stat().st_mtime_ns == stamps[p] for p in untouched)
    assert generate(tmp_path, 10, seed=3) == 2
    assert generate(tmp_path, 10, seed=3, overwrite=True) == 10
    assert not [p for p in tmp_path.rglob(".*")], "temporary files left behind"


def test_refuses_to_mix_settings_in_one_folder(tmp_path):
    generate(tmp_path, 4, seed=3)
    with pytest.raises(ValueError, match="another folder"):
        generate(tmp_path, 8, seed=4)
    with pytest.raises(ValueError, match="another folder"):
        generate(tmp_path, 8, seed=3, max_count=9)
    assert generate(tmp_path, 4, seed=4, overwrite=True) == 4


def test_redraws_a_folder_an_older_generator_made_with_the_same_settings(tmp_path):
    generate(tmp_path, 3, seed=3)
    marker = tmp_path / "synthetic.json"
    settings = json.loads(marker.read_text())
    marker.write_text(json.dumps({**settings, "version": settings["version"] - 1}))
    (tmp_path / "bin-images" / "00002.jpg").write_bytes(b"an older generator's bin")
    assert generate(tmp_path, 3, seed=3) == 3
    assert json.loads(marker.read_text()) == settings
    assert generate(tmp_path, 3, seed=3) == 0
    assert (tmp_path / "bin-images" / "00002.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG again
    marker.write_text(json.dumps({**settings, "version": settings["version"] - 1, "seed": 4}))
    with pytest.raises(ValueError, match="another folder"):  # other settings as well: still refused
        generate(tmp_path, 3, seed=3)


def test_counts_above_five(tmp_path):
    weights = count_weights(0, 12)
    assert all(later < earlier for earlier, later in zip(weights[5:], weights[6:]))
    generate(tmp_path, 40, seed=0, min_count=6, max_count=20)
    found = counts(tmp_path)
    assert all(6 <= c <= 20 for c in found) and len(set(found)) > 3
    image, metadata = make_bin(0, 0, min_count=30, max_count=30)
    assert metadata["EXPECTED_QUANTITY"] == 30 and image.size[0] >= 300


def test_cli_writes_a_dataset(tmp_path):
    result = subprocess.run([sys.executable, "-m", "data.synthetic", "--output", str(tmp_path), "--num_images", "3",
                             "--seed", "1", "--max_count", "7"], cwd=ROOT, env=python_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "metadata").iterdir()) == ["00001.json", "00002.json", "00003.json"]


def test_cli_rejects_min_count_above_max_count(tmp_path):
    command = [sys.executable, "-m", "data.synthetic", "--output", str(tmp_path / "out"), "--num_images", "3",
               "--seed", "1", "--min_count", "4", "--max_count", "2"]
    result = subprocess.run(command, cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_bins_are_encoded_and_banded_like_abid_photos(dataset, abid_sample):
    """Same JPEG tables as ABID's (quality 95, 4:2:0); strap strands a few pixels apart, as the real row profiles show;
    a warm cast on every bin."""
    from data.realism import strap_spectrum

    with Image.open(abid_sample / "bin-images" / "00001.jpg") as real:
        tables, sampling = real.quantization, JpegImagePlugin.get_sampling(real)
    peaks, hues = [], []
    for path in sorted((dataset / "bin-images").glob("*.jpg"))[:60]:
        with Image.open(path) as image:
            assert image.quantization == tables and JpegImagePlugin.get_sampling(image) == sampling
            spectrum = strap_spectrum(image.convert("L"))
            peaks.append(int(spectrum[20:].argmax()) + 20)
            hues.append(statistics.median(image.convert("HSV").resize((32, 24)).getchannel("H").getdata()))
    assert statistics.median(peaks) in range(40, 110), peaks
    assert all(5 <= hue <= 40 for hue in hues), hues  # 0-255 scale: orange to yellow


def test_pod_fabric_keeps_its_hue():
    """Walls, floor and lips are the one fabric in more or less light: brighter or darker, never greener or redder."""
    import random

    from data.synthetic_render import FABRIC, _frame, _pod

    fabric_hue = Image.new("RGB", (1, 1), FABRIC).convert("HSV").getpixel((0, 0))[0]
    for seed in range(40):
        rng = random.Random(seed)
        canvas, opening, fabric = _pod(rng, 180, 140)
        _frame(canvas, rng, opening, fabric)
        colours = [colour for _, colour in canvas.getcolors(maxcolors=4096)]
        fabric_like = [c for c in colours if min(c) > 40 and max(c) - min(c) > 25]  # not the frame's grey gap
        hues = {Image.new("RGB", (1, 1), c).convert("HSV").getpixel((0, 0))[0] for c in fabric_like}
        assert fabric_like and all(abs(hue - fabric_hue) <= 3 for hue in hues), (seed, fabric_hue, hues)
