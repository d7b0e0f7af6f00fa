"""The prediction CLI as a user runs it: folders, files and S3 prefixes in, CSV or JSON Lines out, verify from a CSV
or ABID metadata, and bad images reported per row without stopping the run."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from inference import handler, predict
from tests.conftest import ROOT, python_env
from tests.test_handler import FIXED, fixed, image_bytes, truncated_jpeg

BUCKET = "bincount-predict-test"
LABELS = [str(i) for i in range(6)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fixed_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A saved model that answers FIXED for any image (count 3 at 0.6), so verdicts are known in advance."""
    counter = fixed(handler.model_fn(str(tiny_model_dir)), FIXED)
    out = tmp_path_factory.mktemp("fixed-model")
    counter.model.save_pretrained(out)
    counter.processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def counter(tiny_model_dir) -> handler.CountingModel:
    return handler.model_fn(str(tiny_model_dir))


def endpoint_answer(model: handler.CountingModel, body: bytes, content_type: str = "image/jpeg") -> dict:
    """What the endpoint answers for this image sent alone."""
    return json.loads(handler.output_fn(handler.predict_fn(handler.input_fn(body, content_type), model), None))


def run(*argv: str) -> int:
    return predict.main([str(arg) for arg in argv])


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def probabilities(row: dict) -> list[float]:
    return [float(row[f"p_{label}"]) for label in LABELS]


def test_synthetic_bins_in_a_folder_verified_from_their_metadata(synthetic_bucket, tiny_model_dir, counter, tmp_path,
                                                                  capsys):
    out = tmp_path / "counts.csv"
    assert run("--model", tiny_model_dir, synthetic_bucket / "bin-images", "--metadata", synthetic_bucket / "metadata",
               "--output", out, "--batch_size", 7) == 0

    images = sorted((synthetic_bucket / "bin-images").glob("*.jpg"))
    rows = read_csv(out)
    assert list(rows[0]) == ["id", "path", "count", "expected_count", *(f"p_{label}" for label in LABELS),
                             "expected_quantity", "match_probability", "verdict", "reason", "error"]
    assert [row["id"] for row in rows] == [image.stem for image in images]  # "00001": ids stay strings
    for row, image in zip(rows, images):
        metadata = json.loads((synthetic_bucket / "metadata" / f"{image.stem}.json").read_text())
        assert row["path"] == str(image) and row["error"] == ""
        assert sum(probabilities(row)) == pytest.approx(1, abs=1e-4)
        assert int(row["count"]) == max(range(6), key=lambda i: probabilities(row)[i])
        assert int(row["expected_quantity"]) == metadata["EXPECTED_QUANTITY"]
        assert row["verdict"] in {"match", "mismatch", "uncertain"}
    for row, image in list(zip(rows, images))[:3]:  # the endpoint's code path gives the endpoint's answer
        assert probabilities(row) == pytest.approx(
            list(endpoint_answer(counter, image.read_bytes())["probabilities"].values()), abs=1e-5)
    assert f"{len(images)} images: {len(images)} counted, 0 errors; verdicts" in capsys.readouterr().err


def test_real_abid_bins_to_json_lines_with_their_expected_quantities(abid_sample, tiny_model_dir, counter, tmp_path):
    out = tmp_path / "counts.jsonl"
    assert run("--model", tiny_model_dir, abid_sample / "bin-images", "--metadata", abid_sample / "metadata",
               "--output", out) == 0

    records = read_jsonl(out)
    images = sorted((abid_sample / "bin-images").glob("*.jpg"))
    assert [record["id"] for record in records] == [image.stem for image in images]
    for record, image in zip(records, images):
        quantity = json.loads((abid_sample / "metadata" / f"{image.stem}.json").read_text())["EXPECTED_QUANTITY"]
        assert record["expected_quantity"] == quantity and "error" not in record
        assert record["verdict"] in {"match", "mismatch", "uncertain"}
        assert ("reason" in record) == (quantity > 5)  # counts 0-5 cannot represent more
    alone = endpoint_answer(counter, images[0].read_bytes())
    assert records[0]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)
    assert records[0]["count"] == alone["count"]


def test_an_s3_prefix_with_metadata_under_another(aws, fixed_model_dir, synthetic_bucket, tmp_path, capsys):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    images = sorted((synthetic_bucket / "bin-images").glob("*.jpg"))[:6]
    for image in images:
        s3.upload_file(str(image), BUCKET, f"bin-images/{image.name}")
    for image in images[:5]:  # the last bin has no metadata
        s3.upload_file(str(synthetic_bucket / "metadata" / f"{image.stem}.json"), BUCKET, f"metadata/{image.stem}.json")
    out = tmp_path / "counts.jsonl"
    assert run("--model", fixed_model_dir, f"s3://{BUCKET}/bin-images/", "--metadata", f"s3://{BUCKET}/metadata",
               "--output", out, "--batch_size", 4) == 0

    records = read_jsonl(out)
    assert [record["path"] for record in records] == [f"s3://{BUCKET}/bin-images/{image.name}" for image in images]
    for record, image in zip(records[:5], images):
        quantity = json.loads((synthetic_bucket / "metadata" / f"{image.stem}.json").read_text())["EXPECTED_QUANTITY"]
        verdict = "match" if quantity == 3 else "uncertain" if quantity == 4 else "mismatch"  # P = FIXED[quantity]
        assert record["expected_quantity"] == quantity and record["verdict"] == verdict
        assert record["probabilities"] == pytest.approx(dict(zip(LABELS, FIXED)), abs=1e-4)
    assert "verdict" not in records[5] and "error" not in records[5]
    assert "6 images: 6 counted, 0 errors; verdicts" in (err := capsys.readouterr().err)
    assert "not verified 1 metadata_missing" in err


def test_bad_files_are_rows_with_an_error_and_the_run_goes_on(tiny_model_dir, counter, tmp_path, capsys):
    bins = tmp_path / "bins"
    bins.mkdir()
    bodies = {"00001.jpg": image_bytes(seed=1), "00002.jpg": truncated_jpeg(), "00003.jpg": b"not an image at all",
              "00004.png": image_bytes("PNG", seed=4), "00005.jpg": image_bytes(seed=5)}
    for name, body in bodies.items():
        (bins / name).write_bytes(body)
    (bins / "notes.txt").write_text("not a bin")  # a folder's other files are not images to count

    results = {}
    for batch_size in (1, 4):
        out = tmp_path / f"counts-{batch_size}.csv"
        assert run("--model", tiny_model_dir, bins, "--output", out, "--batch_size", batch_size) == 0
        results[batch_size] = read_csv(out)
        assert "5 images: 3 counted, 2 errors" in capsys.readouterr().err

    rows = results[4]
    assert [row["id"] for row in rows] == ["00001", "00002", "00003", "00004", "00005"]
    assert "truncated" in rows[1]["error"] and rows[1]["count"] == ""
    assert "not an image" in rows[2]["error"]
    for row, (name, body) in zip(rows, bodies.items()):
        if row["error"] == "":
            content_type = "image/png" if name.endswith(".png") else "image/jpeg"
            assert probabilities(row) == pytest.approx(
                list(endpoint_answer(counter, body, content_type)["probabilities"].values()), abs=1e-5)
    for one, batched in zip(results[1], results[4]):  # batching changes nothing
        assert one["error"] == batched["error"]
        if one["error"] == "":
            assert probabilities(one) == pytest.approx(probabilities(batched), abs=1e-5)


def test_expected_quantities_from_a_csv_with_thresholds_from_the_command_line(fixed_model_dir, tmp_path):
    bins = tmp_path / "bins"
    bins.mkdir()
    for name in ("00121.jpg", "121.jpg", "7.jpg", "8.jpg"):
        (bins / name).write_bytes(image_bytes())
    expected = tmp_path / "expected.csv"
    expected.write_text("image_id,expected_quantity\n00121,3\n121,4\n7,0\n")
    out = tmp_path / "verified.csv"
    assert run("--model", fixed_model_dir, bins, "--expected", expected, "--output", out,
               "--match_threshold", "0.7", "--mismatch_threshold", "0.25") == 0

    rows = {row["id"]: row for row in read_csv(out)}
    assert rows["00121"]["expected_quantity"] == "3" and rows["00121"]["verdict"] == "uncertain"  # 0.6 < 0.7
    assert rows["121"]["expected_quantity"] == "4" and rows["121"]["verdict"] == "mismatch"  # 0.25 <= 0.25
    assert rows["7"]["verdict"] == "mismatch" and float(rows["7"]["match_probability"]) == pytest.approx(0.02)
    assert rows["8"]["verdict"] == rows["8"]["expected_quantity"] == ""


def bad_expected(tmp_path: Path) -> Path:
    path = tmp_path / "expected.csv"
    path.write_text("image_id,expected_quantity\n00001,three\n")
    return path


@pytest.mark.parametrize("arguments, message", [
    (["{image}", "{tmp}/missing.jpg"], "no such file or folder"),
    (["{image}", "--output", "{tmp}/counts.xlsx"], "use .csv or .jsonl"),
    (["{image}", "--expected", "{bad}", "--metadata", "{tmp}"], "not both"),
    (["{image}", "--expected", "{bad}"], "line 2: expected_quantity must be a non-negative integer"),
    (["{image}", "--metadata", "{tmp}/no-metadata"], "no such metadata folder"),
    (["{image}", "--match_threshold", "0.05"], "mismatch_threshold (0.1) < match_threshold (0.05)"),
    (["{image}", "--batch_size", "0"], "at least 1"),
    (["{tmp}/empty"], "no images found"),
    (["{image}", "s3://Not_A_Bucket/bin-images/"], "not an S3 URI"),
])
def test_bad_arguments_fail_with_one_line(tiny_model_dir, tmp_path, capsys, arguments, message):
    (tmp_path / "bin.jpg").write_bytes(image_bytes())
    (tmp_path / "empty").mkdir()
    values = {"image": tmp_path / "bin.jpg", "tmp": tmp_path, "bad": bad_expected(tmp_path)}
    assert run("--model", tiny_model_dir, *(argument.format(**values) for argument in arguments)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_a_missing_model_fails_with_one_line(tmp_path, capsys):
    (tmp_path / "bin.jpg").write_bytes(image_bytes())
    assert run("--model", tmp_path / "no-model", tmp_path / "bin.jpg") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_command_line_writes_csv_to_stdout_and_progress_to_stderr(tiny_model_dir, tmp_path):
    (tmp_path / "00042.jpg").write_bytes(image_bytes())
    shutil.copy(tmp_path / "00042.jpg", tmp_path / "00043.jpg")
    done = subprocess.run([sys.executable, "-m", "inference.predict", "--model", str(tiny_model_dir), str(tmp_path)],
                          cwd=ROOT, env=python_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert [row["id"] for row in rows] == ["00042", "00043"] and rows[0]["count"] == rows[1]["count"]
    assert "counting" in done.stderr and "2 images: 2 counted, 0 errors" in done.stderr
