"""The inventory audit: its counts on a hand-built example, the seeded wrong records, the thresholds it chooses, the
command (and what it refuses), and the handler picking the saved thresholds up under env and request overrides."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from core import verify as rule
from inference import handler
from tests.conftest import ABID_SAMPLE, make_tiny_model
from train import audit

NAMES = ["0", "1", "2", "3"]


def probabilities_with(recorded: list[int], p: list[float], classes: int = 4) -> np.ndarray:
    """Rows that put probability p[i] on class recorded[i] and share the rest evenly."""
    rows = np.zeros((len(p), classes))
    for row, (index, value) in enumerate(zip(recorded, p)):
        rows[row] = (1 - value) / (classes - 1)
        rows[row, index] = value
    return rows


def test_audit_counts_on_a_hand_built_example():
    labels, offsets = np.array([0, 1, 2, 3, 1, 2]), np.array([0, 0, 1, -2, -1, 0])
    probabilities = probabilities_with([0, 1, 3, 1, 0, 2], [0.9, 0.05, 0.02, 0.3, 0.08, 0.6])
    p = audit.recorded_probability(probabilities, labels, offsets, NAMES)
    assert p == pytest.approx([0.9, 0.05, 0.02, 0.3, 0.08, 0.6])
    result = audit.shares(p, offsets, match=0.5, mismatch=0.1)
    assert result["false_alarm"] == pytest.approx(1 / 3)  # 0.05 on a correct record
    assert result["caught_1"] == 1.0 and result["caught_2"] == 0.0 and result["caught"] == pytest.approx(2 / 3)
    assert result["wrong_called_match"] == 0.0 and result["uncertain"] == pytest.approx(1 / 6)
    assert list(audit.verdicts(p, {"match": 0.5, "mismatch": 0.1})) == [
        "match", "mismatch", "mismatch", "uncertain", "mismatch", "match"]
    no_far = audit.shares(p[:3], offsets[:3], 0.5, 0.1)
    assert no_far["caught_2"] is None, "no record of that kind: no share, rather than a made-up 0"


def test_wrong_records_are_seeded_inside_the_label_range():
    names = ["1", "2", "3", "4", "5"]
    labels = np.arange(1000) % 5
    offsets = audit.record_offsets(labels, names, 1.0, seed=3)
    assert np.all(np.isin(offsets, [-2, -1, 1, 2])) and {1, 2} <= set(np.abs(offsets).tolist())
    recorded = labels + 1 + offsets
    assert recorded.min() >= 1 and recorded.max() <= 5
    assert np.array_equal(offsets, audit.record_offsets(labels, names, 1.0, seed=3))
    assert not audit.record_offsets(labels, names, 0.0, seed=3).any()
    assert 0.45 < np.mean(audit.record_offsets(labels, names, 0.5, seed=1) != 0) < 0.55
    assert set(audit.record_offsets(np.zeros(50, dtype=int), ["0", "1"], 1.0, 0).tolist()) == {1}


def test_chosen_thresholds_meet_the_target_false_alarm_share():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    truth = rng.uniform(0.05, 0.95, 400)
    probabilities = probabilities_with(labels.tolist(), truth.tolist())
    chosen = audit.choose_thresholds(probabilities, labels, NAMES, 0.05)
    assert 0 <= chosen["mismatch"] < chosen["match"] <= 1
    allowed = audit.allowed(400, 0.05)
    assert allowed == 19, "floor(0.05 * 401) - 1"
    assert np.sum(truth <= chosen["mismatch"]) <= allowed < np.sum(truth <= chosen["mismatch"] + 0.005)
    assert chosen["chosen_on"]["false_alarm"] <= 0.05 and chosen["chosen_on"]["wrong_called_match"] <= 0.05
    assert chosen["chosen_on"]["records"] > 400, "every bin also recorded with each wrong count in range"


def test_chosen_thresholds_keep_false_alarms_on_new_bins_under_the_target():
    """Chosen on 50 validation bins, the thresholds must hold on the bins that come after: averaged over many draws,
    the false-alarm rate on new bins (here P(truth <= mismatch), truth uniform) stays under 5%, where the share on
    the validation bins alone would give about 5.9%."""
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(300):
        labels, truth = rng.integers(0, 4, 50), rng.uniform(0, 1, 50)
        chosen = audit.choose_thresholds(probabilities_with(labels.tolist(), truth.tolist()), labels, NAMES, 0.05)
        rates.append(chosen["mismatch"])
    assert 0.03 < np.mean(rates) < 0.05


def test_a_validation_split_too_small_to_bound_false_alarms_never_flags_a_record(caplog):
    labels = np.array([0, 1, 2, 3] * 4)
    chosen = audit.choose_thresholds(probabilities_with(labels.tolist(), [0.5] * 16), labels, NAMES, 0.05)
    assert chosen["mismatch"] == 0.0 and chosen["chosen_on"]["false_alarm"] == 0.0
    assert "cannot bound false alarms" in caplog.text


def tiny_split_dataset(path, names: list[str], n: int = 24, labelled: bool = True):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(n)]
    columns = {"image": images, "image_id": [str(i) for i in range(n)]}
    features = {"image": ImageFeature(), "image_id": Value("string")}
    if labelled:
        columns["label"] = [i % len(names) for i in range(n)]
        features["label"] = ClassLabel(names=names)
    split = Dataset.from_dict(columns, features=Features(features))
    DatasetDict({"validation": split, "test": split}).save_to_disk(str(path))
    return path


def test_audit_command_writes_its_report_at_the_saved_thresholds(tmp_path, capsys, one_torch_thread):
    model = make_tiny_model(tmp_path / "model", labels=NAMES)
    dataset = tiny_split_dataset(tmp_path / "ds", NAMES)
    assert audit.main(["--model", str(model), "--dataset", str(dataset), "--split", "validation",
                       "--save_thresholds", "true", "--target_false_alarm", "0.1"]) == 0
    saved = json.loads((model / "verify.json").read_text())
    assert saved["target_false_alarm"] == 0.1 and saved["chosen_on"]["false_alarm"] <= 0.1
    assert audit.main(["--model", str(model), "--dataset", str(dataset), "--output", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert (report["at_thresholds"]["match"], report["at_thresholds"]["mismatch"]) == (saved["match"],
                                                                                      saved["mismatch"])
    assert report["at_thresholds"]["records"] == 24 and (tmp_path / "a" / "audit.png").stat().st_size > 5000
    assert "| match >= |" in (tmp_path / "a" / "audit.md").read_text()


def test_audit_refuses_unlabelled_or_mismatched_splits(tmp_path, capsys, one_torch_thread):
    model = make_tiny_model(tmp_path / "model", labels=NAMES)
    cases = [(tiny_split_dataset(tmp_path / "other", ["1", "2", "3", "4"]), "has classes"),
             (tiny_split_dataset(tmp_path / "bare", NAMES, labelled=False), "has no labels")]
    for dataset, message in cases:
        assert audit.main(["--model", str(model), "--dataset", str(dataset)]) == 2
        assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert audit.main(["--model", str(model), "--dataset", str(cases[0][0]), "--split", "train"]) == 2
    assert "no 'train' split" in capsys.readouterr().err
    assert not (model / "audit-test").exists()


@pytest.mark.parametrize("option, value", [("--discrepancy_rate", "3"), ("--target_false_alarm", "2"),
                                           ("--batch_size", "0")])
def test_audit_refuses_out_of_range_options_with_one_line(tmp_path, capsys, option, value):
    model = make_tiny_model(tmp_path / "model", labels=NAMES)
    capsys.readouterr()
    assert audit.main(["--model", str(model), "--dataset", str(tmp_path), option, value]) == 2
    assert capsys.readouterr().err.strip() == f"error: {option} must be " + {
        "--discrepancy_rate": "between 0 and 1, got 3.0", "--target_false_alarm": "a share in (0, 1), got 2.0",
        "--batch_size": ">= 1, got 0"}[option]


def verdict(model, image: bytes, quantity: int, **parameters) -> dict:
    body = json.dumps({"inputs": base64.b64encode(image).decode(),
                       "parameters": {"expected_quantity": quantity, **parameters}})
    data = handler.input_fn(body, "application/json")
    return json.loads(handler.output_fn(handler.predict_fn(data, model), "application/json"))


def test_handler_uses_saved_thresholds_unless_env_or_request_override(tmp_path, monkeypatch, one_torch_thread):
    folder = make_tiny_model(tmp_path / "model", labels=NAMES)
    buffer = io.BytesIO()
    Image.fromarray(np.full((60, 80, 3), 120, dtype=np.uint8)).save(buffer, "JPEG")
    for name in ("BINCOUNT_MATCH_THRESHOLD", "BINCOUNT_MISMATCH_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    plain = verdict(handler.model_fn(str(folder)), buffer.getvalue(), 1)
    p = plain["match_probability"]
    assert 0.05 < p < 0.95, "a random tiny model is unsure; the thresholds below straddle p"
    rule.save(folder, {"match": p + 0.01, "mismatch": p - 0.01, "target_false_alarm": 0.05})
    model = handler.model_fn(str(folder))
    assert verdict(model, buffer.getvalue(), 1)["verdict"] == "uncertain"
    rule.save(folder, {"match": p - 0.02, "mismatch": p - 0.04, "target_false_alarm": 0.05})
    model = handler.model_fn(str(folder))
    assert verdict(model, buffer.getvalue(), 1)["verdict"] == "match", "verify.json's match threshold applies"
    monkeypatch.setenv("BINCOUNT_MATCH_THRESHOLD", "0.99")
    monkeypatch.setenv("BINCOUNT_MISMATCH_THRESHOLD", str(min(0.98, p + 0.01)))
    assert verdict(model, buffer.getvalue(), 1)["verdict"] == "mismatch", "the endpoint's environment wins"
    request = verdict(model, buffer.getvalue(), 1, match_threshold=p - 0.02, mismatch_threshold=0.0)
    assert request["verdict"] == "match", "and the request wins over both"


@pytest.mark.skipif(not (ABID_SAMPLE.parent / "abid-real" / "labels.csv").is_file(),
                    reason="real ABID bins not found at ../shared/abid-real")
def test_audit_plays_on_real_bins(tmp_path, one_torch_thread):
    from data.build import main as build

    real = ABID_SAMPLE.parent / "abid-real" / "bucket"
    dataset = tmp_path / "real"
    assert build(["--source", str(real), "--output", str(dataset), "--min_count", "1", "--max_count", "5",
                  "--shorter_side", "96", "--num_proc", "1", "--split_ratios", "0", "0", "1"]) == 0
    model = make_tiny_model(tmp_path / "model", labels=["1", "2", "3", "4", "5"])
    assert audit.main(["--model", str(model), "--dataset", str(dataset), "--output", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["at_thresholds"]["records"] == 137  # the bucket layout's bins with 1-5 items
    assert report["at_thresholds"]["wrong_records"] > 40
