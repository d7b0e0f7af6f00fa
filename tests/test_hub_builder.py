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


LOAD_CONFIGS = """
import json, sys
from datasets import load_dataset
from huggingface_hub import HfApi, hf_hub_download
repo = sys.argv[1]
answer = {"files": sorted(HfApi().list_repo_files(repo, repo_type="dataset")),
          "card": open(hf_hub_download(repo, "README.md", repo_type="dataset")).read()}
for name in sys.argv[2:]:
    ds = load_dataset(repo, None if name == "default" else name)
    answer[name] = {"names": ds["train"].features["label"].names, "rows": {s: sorted(ds[s]["image_id"]) for s in ds}}
print(json.dumps(answer))
"""


def test_one_hub_repo_holds_several_configs(synthetic_bucket, hub, tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import hub_env

    env = hub_env(hub.endpoint, tmp_path / "hf-home")
    # The default configuration last: its push clears its own data/ folder and must leave the named ones alone.
    pushes = (("moderate", "moderate", []), ("udacity", "udacity", ["--min_count", "1"]), ("default", "moderate", []))
    for name, build, selection in pushes:
        pushed = subprocess.run([sys.executable, "-m", "data.build", "--source", str(synthetic_bucket), "--output",
                                 str(tmp_path / build), "--shorter_side", "96", "--limit", "60", "--num_proc", "1",
                                 *selection, "--push_to_hub", "user/bin-configs", "--config_name", name],
                                env=env, capture_output=True, text=True, timeout=300)
        assert pushed.returncode == 0, pushed.stderr[-3000:]
    loaded = subprocess.run([sys.executable, "-c", LOAD_CONFIGS, "user/bin-configs", "moderate", "udacity", "default"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    configs = (("default", "moderate", "data/", 0), ("moderate", "moderate", "moderate/", 0),
               ("udacity", "udacity", "udacity/", 1))  # name, build folder, folder in the repo, lowest class
    for name, build, folder, lowest in configs:
        local = load_from_disk(str(tmp_path / build))
        assert answer[name]["names"] == [str(i) for i in range(lowest, 6)]
        assert answer[name]["rows"] == {s: sorted(local[s]["image_id"]) for s in local if len(local[s])}
        parquet = [f for f in answer["files"] if f.startswith(folder) and f.endswith(".parquet")]
        assert any(f.startswith(f"{folder}train-") for f in parquet) and all(f.count("/") == 1 for f in parquet)
    card = answer["card"]
    assert "configs:" in card and "config_name: moderate" in card and "config_name: udacity" in card
    assert "config_name: default" in card and "CC BY-NC-SA 3.0 US" in card
    assert "path: udacity/train-*" in card and "path: data/train-*" in card
    assert "class_histogram_udacity.png" in answer["files"] and "class_histogram_moderate.png" in answer["files"]
