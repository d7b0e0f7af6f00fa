"""The dataset as ``datasets`` users expect it: a builder class with named configurations, thin over data.build."""

from __future__ import annotations

import pytest
from datasets import load_from_disk

from data.hub_builder import AbidBins


def prepared(bucket, tmp_path, config: str, mode: str | None = None, **overrides):
    builder = AbidBins(config_name=config, source=str(bucket), shorter_side=160, cache_dir=str(tmp_path / "cache"),
                       **overrides)
    builder.download_and_prepare(download_mode=mode)
    return builder.as_dataset()


def test_moderate_is_what_data_build_builds(synthetic_bucket, tiny_dataset, tmp_path):
    splits = prepared(synthetic_bucket, tmp_path, "moderate")
    built = load_from_disk(str(tiny_dataset))
    assert set(splits) == set(built)
    for split in built:
        assert splits[split].features["label"].names == [str(i) for i in range(6)]
        assert splits[split]["image_id"] == built[split]["image_id"]
        assert splits[split]["label"] == built[split]["label"]
        assert splits[split][0]["image"].tobytes() == built[split][0]["image"].tobytes()


def test_udacity_and_hard_configs_have_their_classes(synthetic_bucket, tmp_path):
    udacity = prepared(synthetic_bucket, tmp_path, "udacity", limit=80)
    assert udacity["train"].features["label"].names == ["1", "2", "3", "4", "5"]
    assert min(q for split in udacity.values() for q in split["expected_quantity"]) >= 1
    hard = prepared(synthetic_bucket, tmp_path, "hard", limit=80)
    names = hard["train"].features["label"].names
    assert names == [*map(str, range(21)), "21+"]
    for split in hard.values():
        for quantity, label in zip(split["expected_quantity"], split["label"]):
            assert names[label] == (str(quantity) if quantity <= 20 else "21+")


def test_preparing_again_reuses_the_build(synthetic_bucket, tmp_path, monkeypatch):
    first = prepared(synthetic_bucket, tmp_path, "moderate", limit=40)
    from data import build

    calls = []
    monkeypatch.setattr(build, "process_chunks", lambda *a, **k: pytest.fail("built again"))
    monkeypatch.setattr(build, "build", lambda *a, _build=build.build: calls.append(a) or _build(*a))
    again = prepared(synthetic_bucket, tmp_path, "moderate", "force_redownload", limit=40)
    assert len(calls) == 1 and again["train"]["image_id"] == first["train"]["image_id"]


def test_unknown_configs_and_options_are_refused(synthetic_bucket, tmp_path):
    with pytest.raises(ValueError, match="easy"):
        AbidBins(config_name="easy", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="colour"):
        AbidBins(config_name="moderate", colour="red", cache_dir=str(tmp_path))
