"""The dataset builder: sources, labels, selection, splits, bad records, outputs and errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_from_disk
from PIL import Image

from cloud import s3
from core.labels import LabelSpace
from data.build import main as build_main
from data.subsets import hash_split, load_id_list
from tests.conftest import python_env
from tests.fixtures.abid_like import make_abid_like


def jpeg(size=(470, 350), color=(90, 80, 70)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG")
    return out.getvalue()


def metadata(quantity) -> bytes:
    return json.dumps({"BIN_FCSKU_DATA": {}, "EXPECTED_QUANTITY": quantity}).encode()


def write_bucket(root: Path, bins: dict[str, tuple[bytes | None, bytes | None]]) -> Path:
    """A bucket-layout folder: id -> (image bytes or None, metadata bytes or None)."""
    (root / "bin-images").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    for image_id, (image, meta) in bins.items():
        if image is not None:
            (root / "bin-images" / f"{image_id}.jpg").write_bytes(image)
        if meta is not None:
            (root / "metadata" / f"{image_id}.json").write_bytes(meta)
    return root


@pytest.fixture(scope="session")
def synthetic_sample(tmp_path_factory) -> Path:
    """An ABID-layout sample generated for the session (tests/fixtures/abid_like.py): runs on any checkout."""
    return make_abid_like(tmp_path_factory.mktemp("abid-like") / "sample")


@pytest.fixture(params=["synthetic", pytest.param("real", marks=pytest.mark.slow)])
def sample(request) -> Path:
    """The builder's input: the generated sample always; the real ABID sample as an extra (slow, needs ../shared)."""
    if request.param == "real":
        return request.getfixturevalue("abid_sample")
    return request.getfixturevalue("synthetic_sample")


def build(*args: str) -> int:
    return build_main(["--num_proc", "1", *args])


def rows(path: Path) -> dict[str, dict]:
    """image_id -> row (without the image) over all splits, plus the split name."""
    out = {}
    for split, dataset in load_from_disk(str(path)).items():
        for row in dataset.remove_columns("image"):
            out[row["image_id"]] = {**row, "split": split}
    return out


# ---- labels and real ABID metadata ----------------------------------------------------------------------------------

def test_label_space_rules():
    moderate = LabelSpace(0, 5)
    assert [moderate.label_of(c) for c in (0, 5, 6)] == [0, 5, None]
    assert LabelSpace(1, 5).label_of(0) is None and LabelSpace(1, 5).names(0) == ["1", "2", "3", "4", "5"]
    overflow = LabelSpace(0, 5, overflow_bucket=True)
    assert overflow.label_of(40) == 6 and overflow.names(6)[-1] == "6+"
    hard = LabelSpace(0, -1)
    assert hard.label_of(120) == 120 and hard.names(3) == ["0", "1", "2", "3"]


def test_real_sample_labels_equal_expected_quantity(abid_sample, tmp_path):
    assert build("--source", str(abid_sample), "--output", str(tmp_path / "ds"), "--max_count", "-1") == 0
    built = rows(tmp_path / "ds")
    real = {p.stem: json.loads(p.read_text())["EXPECTED_QUANTITY"] for p in (abid_sample / "metadata").glob("*.json")}
    assert set(built) == set(real)  # every real metadata file parsed and every image kept
    names = load_from_disk(str(tmp_path / "ds"))["train"].features["label"].names
    for image_id, row in built.items():
        assert row["expected_quantity"] == real[image_id]
        assert int(names[row["label"]]) == real[image_id]
    unpadded = [i for i in real if not i.startswith("0") and f"{int(i):05d}" in real]
    assert unpadded, "the sample holds bins whose ids differ only by zero padding"
    for image_id in unpadded:  # e.g. 529 and 00529: two bins, two rows
        assert built[image_id]["image_id"] != built[f"{int(image_id):05d}"]["image_id"]


def test_real_sample_moderate_excludes_large_counts(abid_sample, tmp_path):
    assert build("--source", str(abid_sample), "--output", str(tmp_path / "ds")) == 0
    report = json.loads((tmp_path / "ds" / "build_report.json").read_text())
    real = [json.loads(p.read_text())["EXPECTED_QUANTITY"] for p in (abid_sample / "metadata").glob("*.json")]
    assert report["kept"] == sum(q <= 5 for q in real)
    assert report["excluded"]["count_out_of_range"] == sum(q > 5 for q in real)
    assert report["classes"] == ["0", "1", "2", "3", "4", "5"]


def test_metadata_without_image_is_dropped(sample, tmp_path):
    root = tmp_path / "bucket"
    (root / "metadata").mkdir(parents=True)
    for path in (sample / "metadata-only").glob("*.json"):
        (root / "metadata" / path.name).write_bytes(path.read_bytes())
    image_id = sorted(p.stem for p in (sample / "bin-images").glob("*.jpg"))[0]
    (root / "bin-images").mkdir()
    (root / "bin-images" / f"{image_id}.jpg").write_bytes((sample / "bin-images" / f"{image_id}.jpg").read_bytes())
    (root / "metadata" / f"{image_id}.json").write_bytes((sample / "metadata" / f"{image_id}.json").read_bytes())
    assert build("--source", str(root), "--output", str(tmp_path / "ds"), "--max_count", "-1") == 0
    report = json.loads((tmp_path / "ds" / "build_report.json").read_text())
    assert report["kept"] == 1
    assert report["dropped"] == {"image_missing": len(list((sample / "metadata-only").glob("*.json")))}


def test_real_subset_lists_hold_the_published_ids(abid_sample):
    udacity = load_id_list(abid_sample / "lists" / "udacity_file_list.json")
    assert len(udacity) == 10441 and "100313" in udacity and "09915" in udacity


def test_subset_lists_select_the_right_ids(sample, tmp_path):
    udacity = load_id_list(sample / "lists" / "udacity_file_list.json")
    listed = json.loads((sample / "lists" / "udacity_file_list.json").read_text())
    assert udacity == {Path(path).stem for paths in listed.values() for path in paths}
    challenge = load_id_list(sample / "lists" / "abid_challenge_counting_val.json")
    entries = json.loads((sample / "lists" / "abid_challenge_counting_val.json").read_text())
    assert len(challenge) == len(entries) and "%05d" % (entries[0][0] + 1) in challenge
    sample_ids = {p.stem for p in (sample / "bin-images").glob("*.jpg")}
    assert build("--source", str(sample), "--output", str(tmp_path / "ds"), "--max_count", "-1",
                 "--subset", str(sample / "lists" / "abid_challenge_counting_val.json")) == 0
    assert set(rows(tmp_path / "ds")) == sample_ids & challenge


def test_ids_differing_only_by_leading_zeros_stay_two_bins(synthetic_sample, tmp_path):
    assert build("--source", str(synthetic_sample), "--output", str(tmp_path / "ds"), "--max_count", "-1") == 0
    built = rows(tmp_path / "ds")
    assert {"1", "00001"} <= set(built) and built["1"]["expected_quantity"] == built["00001"]["expected_quantity"]
    metadata = {p.stem: json.loads(p.read_text())["EXPECTED_QUANTITY"]
                for p in (synthetic_sample / "metadata").glob("*.json")}
    assert {i: r["expected_quantity"] for i, r in built.items()} == {i: metadata[i] for i in built}
    assert set(built) == {p.stem for p in (synthetic_sample / "bin-images").glob("*.jpg")}
    assert {r["label"] for r in built.values()} and all(r["label"] == r["expected_quantity"] for r in built.values())


def test_split_files_assign_splits(sample, tmp_path):
    ids = sorted(p.stem for p in (sample / "bin-images").glob("*.jpg"))
    train, test = ids[:30], ids[30:40]
    (tmp_path / "train.json").write_text(json.dumps({"1": [f"metadata/{i}.json" for i in train]}))
    (tmp_path / "test.json").write_text(json.dumps({"1": [f"metadata/{i}.json" for i in test]}))
    assert build("--source", str(sample), "--output", str(tmp_path / "ds"), "--max_count", "-1",
                 "--split_files", f"train={tmp_path / 'train.json'}", f"test={tmp_path / 'test.json'}") == 0
    built = rows(tmp_path / "ds")
    assert {i for i, r in built.items() if r["split"] == "train"} == set(train)
    assert {i for i, r in built.items() if r["split"] == "test"} == set(test)
    assert set(load_from_disk(str(tmp_path / "ds"))) == {"train", "test"}


# ---- splits ---------------------------------------------------------------------------------------------------------

def test_hash_split_is_stable_and_proportional():
    # Fixed expectations: a split must never change across machines, Python versions or releases.
    assert [hash_split(i, (0.8, 0.1, 0.1)) for i in ("00001", "121", "00121", "535234")] == \
           [hash_split(i, (8, 1, 1)) for i in ("00001", "121", "00121", "535234")]
    assert hash_split("00001", (1, 0, 0)) == "train" and hash_split("00001", (0, 0, 1)) == "test"
    splits = [hash_split(f"{i:05d}", (0.8, 0.1, 0.1)) for i in range(5000)]
    assert 0.77 < splits.count("train") / 5000 < 0.83 and 0.08 < splits.count("test") / 5000 < 0.12


def test_splits_independent_of_listing_order_and_parallelism(sample, tmp_path):
    assert build("--source", str(sample), "--output", str(tmp_path / "a"), "--chunk_size", "7") == 0
    assert build_main(["--source", str(sample), "--output", str(tmp_path / "b"), "--num_proc", "2",
                       "--chunk_size", "3"]) == 0
    a, b = rows(tmp_path / "a"), rows(tmp_path / "b")
    assert a == b
    assert all(r["split"] == hash_split(i, (0.8, 0.1, 0.1)) for i, r in a.items())


# ---- bad records ----------------------------------------------------------------------------------------------------

def test_bad_records_are_skipped_counted_and_listed(tmp_path):
    good = jpeg()
    truncated = good[: len(good) // 2]
    png = io.BytesIO()
    Image.new("RGB", (40, 30)).save(png, format="PNG")
    bomb = jpeg(size=(4000, 3000), color=(0, 0, 0))
    root = write_bucket(tmp_path / "bucket", {
        "00001": (good, metadata(2)),
        "00002": (good, metadata(0)),
        "00003": (b"\xff\xd8\xff\xe0" + b"garbage" * 50, metadata(1)),   # corrupt
        "00004": (truncated, metadata(1)),                              # truncated
        "00005": (b"", metadata(1)),                                    # zero bytes
        "00006": (png.getvalue(), metadata(1)),                         # not a JPEG
        "00007": (bomb, metadata(1)),                                   # over --max_pixels
        "00008": (good, b"{not json"),                                  # malformed JSON
        "00009": (good, json.dumps({"BIN_FCSKU_DATA": {}}).encode()),   # no EXPECTED_QUANTITY
        "00010": (good, metadata("3")),                                 # non-integer
        "00011": (good, metadata(2.5)),                                 # non-integer
        "00012": (good, metadata(-1)),                                  # negative
        "00013": (good, None),                                          # image without metadata
        "00014": (None, metadata(2)),                                   # metadata without image
        "121": (good, metadata(3)),
        "00121": (good, metadata(4)),                                   # a different bin than 121
    })
    (root / "bin-images" / "00001.jpeg").write_bytes(good)              # duplicate id
    assert build("--source", str(root), "--output", str(tmp_path / "ds"), "--max_pixels", "1000000") == 0
    report = json.loads((tmp_path / "ds" / "build_report.json").read_text())
    assert report["dropped"] == {
        "image_corrupt": 2, "image_empty": 1, "image_not_jpeg": 1, "image_too_large": 1, "metadata_unreadable": 1,
        "quantity_missing": 1, "quantity_invalid": 3, "metadata_missing": 1, "image_missing": 1, "duplicate_id": 1}
    built = rows(tmp_path / "ds")
    assert set(built) == {"00001", "00002", "121", "00121"}
    assert built["121"]["expected_quantity"] == 3 and built["00121"]["expected_quantity"] == 4
    listed = [json.loads(line) for line in (tmp_path / "ds" / "dropped.jsonl").read_text().splitlines()]
    assert len(listed) == sum(report["dropped"].values())
    assert {d["image_id"]: d["reason"] for d in listed}["00013"] == "metadata_missing"


# ---- outputs --------------------------------------------------------------------------------------------------------

def test_outputs_features_card_report_and_resize(sample, tmp_path):
    out = tmp_path / "ds"
    assert build("--source", str(sample), "--output", str(out), "--shorter_side", "128") == 0
    dataset = load_from_disk(str(out))
    features = dataset["train"].features
    assert features["label"].names == ["0", "1", "2", "3", "4", "5"]
    assert {"image", "label", "image_id", "expected_quantity", "num_asins"} <= set(features)
    assert features["image_id"].dtype == "string"
    row = dataset["train"][0]
    assert min(row["image"].size) == 128 and row["original_width"] > 128
    report = json.loads((out / "build_report.json").read_text())
    assert report["kept"] == sum(len(d) for d in dataset.values())
    assert report["per_split"] == {split: len(d) for split, d in dataset.items()}
    assert sum(report["per_class"]["train"].values()) == len(dataset["train"])
    card = (out / "README.md").read_text()
    assert "CC BY-NC-SA 3.0 US" in card and "class_histogram.png" in card and "license: cc-by-nc-sa-3.0" in card
    assert f"| **total** | {len(dataset['train'])} |" in card
    assert (out / "class_histogram.png").read_bytes().startswith(b"\x89PNG")


def test_keep_original_keeps_bytes(sample, tmp_path):
    assert build("--source", str(sample), "--output", str(tmp_path / "ds"), "--keep_original", "--limit", "5") == 0
    dataset = load_from_disk(str(tmp_path / "ds")).cast_column("image", __import__("datasets").Image(decode=False))
    for split in dataset.values():
        for row in split:
            assert row["image"]["bytes"] == (sample / "bin-images" / f"{row['image_id']}.jpg").read_bytes()


def test_rerun_reuses_and_other_options_refuse(sample, tmp_path, capsys):
    out = str(tmp_path / "ds")
    assert build("--source", str(sample), "--output", out, "--limit", "10") == 0
    stamp = (tmp_path / "ds" / "dataset_dict.json").stat().st_mtime_ns
    assert build("--source", str(sample), "--output", out, "--limit", "10") == 0
    assert (tmp_path / "ds" / "dataset_dict.json").stat().st_mtime_ns == stamp
    assert build("--source", str(sample), "--output", out, "--limit", "12") == 2
    assert "other options" in capsys.readouterr().err
    assert build("--source", str(sample), "--output", out, "--limit", "12", "--overwrite") == 0


@pytest.mark.parametrize("option, value", [("--shorter_side", "0"), ("--num_proc", "0"), ("--jpeg_quality", "101")])
def test_out_of_range_output_options_fail_with_one_line(sample, tmp_path, capsys, option, value):
    assert build("--source", str(sample), "--output", str(tmp_path / "ds"), option, value) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: invalid options: {option} must be ")
    assert not (tmp_path / "ds").exists()


def test_count_folders_with_and_without_split_folders(tmp_path):
    flat = tmp_path / "flat"
    for count, ids in {"1": ["a", "b"], "3": ["c"], "7": ["d"]}.items():
        (flat / count).mkdir(parents=True)
        for image_id in ids:
            (flat / count / f"{image_id}.jpg").write_bytes(jpeg())
    (flat / "3" / "a.jpg").write_bytes(jpeg())  # the same bin in two count folders
    assert build("--source", str(flat), "--output", str(tmp_path / "ds")) == 0
    built = rows(tmp_path / "ds")
    assert {i: r["expected_quantity"] for i, r in built.items()} == {"a": 1, "b": 1, "c": 3}
    report = json.loads((tmp_path / "ds" / "build_report.json").read_text())
    assert report["dropped"] == {"duplicate_id": 1} and report["excluded"] == {"count_out_of_range": 1}

    nested = tmp_path / "nested"
    for split, count, image_id in (("train", "2", "x"), ("valid", "4", "y"), ("test", "0", "z")):
        (nested / split / count).mkdir(parents=True)
        (nested / split / count / f"{image_id}.jpg").write_bytes(jpeg())
    assert build("--source", str(nested), "--output", str(tmp_path / "ds2")) == 0
    assert {i: (r["split"], r["expected_quantity"]) for i, r in rows(tmp_path / "ds2").items()} == {
        "x": ("train", 2), "y": ("validation", 4), "z": ("test", 0)}


# ---- S3 through moto's server, and errors ---------------------------------------------------------------------------

def test_s3_source_through_moto_matches_local_build(aws, sample, tmp_path):
    client = s3.client()
    client.create_bucket(Bucket="abid-mirror")
    s3.upload_dir(client, sample / "bin-images", "s3://abid-mirror/data/bin-images")
    s3.upload_dir(client, sample / "metadata", "s3://abid-mirror/data/metadata")
    assert build_main(["--source", "s3://abid-mirror/data", "--endpoint_url", aws, "--output", str(tmp_path / "s3"),
                       "--num_proc", "2", "--chunk_size", "8"]) == 0
    assert build("--source", str(sample), "--output", str(tmp_path / "local")) == 0
    assert rows(tmp_path / "s3") == rows(tmp_path / "local")


def test_anonymous_reads_of_a_public_bucket_and_a_clear_error_for_a_private_one(aws, sample, tmp_path):
    client = s3.client()
    for bucket in ("abid-public", "abid-private"):
        client.create_bucket(Bucket=bucket)
        s3.upload_dir(client, sample / "bin-images", f"s3://{bucket}/bin-images")
        s3.upload_dir(client, sample / "metadata", f"s3://{bucket}/metadata")
    public_read = [{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": ["arn:aws:s3:::abid-public", "arn:aws:s3:::abid-public/*"]}]
    client.put_bucket_policy(Bucket="abid-public", Policy=json.dumps({"Version": "2012-10-17",
                                                                       "Statement": public_read}))
    assert build("--source", "s3://abid-public", "--unsigned", "--output", str(tmp_path / "public")) == 0
    assert build("--source", str(sample), "--output", str(tmp_path / "local")) == 0
    assert rows(tmp_path / "public") == rows(tmp_path / "local")
    result = subprocess.run([sys.executable, "-m", "data.build", "--source", "s3://abid-private", "--unsigned",
                             "--output", str(tmp_path / "private")], capture_output=True, text=True,
                            env=python_env(), timeout=120)
    assert result.returncode == 2 and "access denied" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("source, message", [
    ("s3://no-such-bucket-here", "bucket does not exist"),
    ("s3://Not_A_Bucket", "not an S3 URI"),
    ("/no/such/folder", "source folder does not exist"),
])
def test_unusable_sources_give_one_clear_line(aws, tmp_path, source, message):
    result = subprocess.run([sys.executable, "-m", "data.build", "--source", source, "--output", str(tmp_path / "ds")],
                            capture_output=True, text=True, env=python_env(), timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert "Traceback" not in result.stderr


def test_unreachable_endpoint_and_denied_access(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Denied(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            body = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Denied)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for endpoint, message in ((f"http://127.0.0.1:{server.server_port}", "access denied"),
                                  ("http://127.0.0.1:9", "cannot reach")):
            result = subprocess.run(
                [sys.executable, "-m", "data.build", "--source", "s3://private-bucket", "--endpoint_url", endpoint,
                 "--output", str(tmp_path / "ds")], capture_output=True, text=True, timeout=180,
                env=python_env(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_MAX_ATTEMPTS="1"))
            assert result.returncode == 2, result.stderr
            assert message in result.stderr.strip().splitlines()[-1]
    finally:
        server.shutdown()


# ---- multi-host builds and the Hub ----------------------------------------------------------------------------------

def test_hosts_build_shards_then_assemble_to_the_same_dataset(sample, tmp_path, monkeypatch):
    common = ["--source", str(sample), "--chunk_size", "6"]
    for host in ("algo-1", "algo-2"):  # what SageMaker tells each instance
        monkeypatch.setenv("SM_HOSTS", json.dumps(["algo-1", "algo-2"]))
        monkeypatch.setenv("SM_CURRENT_HOST", host)
        assert build(*common, "--output", str(tmp_path / host), "--shards_only") == 0
    monkeypatch.delenv("SM_HOSTS")
    monkeypatch.delenv("SM_CURRENT_HOST")
    built_1 = {p.name for p in (tmp_path / "algo-1" / "shards").glob("*.json")}
    built_2 = {p.name for p in (tmp_path / "algo-2" / "shards").glob("*.json")}
    assert built_1 and built_2 and not built_1 & built_2
    assert build(*common, "--output", str(tmp_path / "one-host-missing"), "--assemble_from",
                 str(tmp_path / "algo-1")) == 2
    assert build(*common, "--output", str(tmp_path / "assembled"), "--assemble_from", str(tmp_path / "algo-1"),
                 str(tmp_path / "algo-2")) == 0
    assert build(*common, "--output", str(tmp_path / "single")) == 0
    assert rows(tmp_path / "assembled") == rows(tmp_path / "single")


def test_push_to_hub_then_load_dataset(sample, hub, tmp_path):
    from tests.conftest import HUB_TOKEN, hub_env

    env = hub_env(hub.endpoint, tmp_path / "hf-home")
    pushed = subprocess.run([sys.executable, "-m", "data.build", "--source", str(sample), "--output",
                             str(tmp_path / "ds"), "--push_to_hub", "user/abid-sample-counts"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert HUB_TOKEN in hub.tokens and HUB_TOKEN not in pushed.stdout + pushed.stderr
    loaded = subprocess.run([sys.executable, "-c", """
import json
from datasets import load_dataset
from huggingface_hub import hf_hub_download
ds = load_dataset("user/abid-sample-counts")
card = open(hf_hub_download("user/abid-sample-counts", "README.md", repo_type="dataset")).read()
print(json.dumps({"rows": {s: sorted(ds[s]["image_id"]) for s in ds}, "names": ds["train"].features["label"].names,
                  "licence": "CC BY-NC-SA 3.0 US" in card, "configs": "configs:" in card}))
"""], env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    local = load_from_disk(str(tmp_path / "ds"))
    assert answer["rows"] == {s: sorted(local[s]["image_id"]) for s in local if len(local[s])}
    assert answer["names"] == ["0", "1", "2", "3", "4", "5"] and answer["licence"] and answer["configs"]
