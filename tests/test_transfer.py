"""bench.transfer's code path on a tiny run: synthetic-only scoring against the constants, pre-training then
fine-tuning against real-only on the same folds, resumption; real bins are stood in for by synthetic ones laid out
like ../shared/abid-real (bucket/ and folders/<count>/)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bench import objective, transfer
from data.synthetic import generate


@pytest.fixture(scope="module")
def real_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("abid-real-like")
    generate(root / "bucket", 20, seed=5, min_count=1)
    generate(root / "raw", 30, seed=6, min_count=1)
    for image in sorted((root / "raw" / "bin-images").glob("*.jpg")):
        count = json.loads((root / "raw" / "metadata" / f"{image.stem}.json").read_text())["EXPECTED_QUANTITY"]
        (root / "folders" / str(count)).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / "folders" / str(count) / f"f{image.name}")
    shutil.rmtree(root / "raw")
    return root


def test_tiny_transfer_run_scores_every_arm_and_resumes(real_like, tmp_path, capsys, one_torch_thread):
    output = tmp_path / "transfer.json"
    argv = ["--real", str(real_like), "--seeds", "0", "--folds", "2", "--synthetic_images", "24", "--resolution", "16",
            "--demo_epochs", "1", "--finetune_epochs", "1", "--output", str(output)]
    assert transfer.main(argv) == 0
    saved = json.loads(output.read_text())
    assert sorted(saved["runs"]) == ["pretrained+real/seed0/fold0of2", "pretrained+real/seed0/fold1of2",
                                     "real-only/seed0/fold0of2", "real-only/seed0/fold1of2", "synthetic-only/seed0"]
    run = saved["runs"]["synthetic-only/seed0"]
    assert len(run["test_logits"]) == len(run["test_counts"]) == 50 and len(run["test_logits"][0]) == 6
    scores = transfer.synthetic_only(run)
    for key in ("accuracy", "false_alarm", "const3_accuracy", "prior_false_alarm"):
        assert 0 <= scores[key] <= 1, key
    counts = np.asarray(run["test_counts"])
    assert scores["const3_accuracy"] == pytest.approx(np.mean(counts == 3))
    assert sum(scores["predicted_share"]) == 50
    held = [saved["runs"][f"real-only/seed0/fold{k}of2"]["test_labels"] for k in range(2)]
    assert sorted(held[0] + held[1]) == sorted(np.asarray(counts) - 1)  # every real bin held out exactly once
    assert list((tmp_path / "transfer").glob("synthetic-only-seed0-16px.safetensors"))
    text = capsys.readouterr().out
    assert "| synthetic only (demo recipe, 1 seeds) |" in text and "| pretrained+real | 2 |" in text
    assert "| constant 3 |" in text and (tmp_path / "transfer.md").read_text().strip() in text
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in text.splitlines() if "| 2 |" in line}
    accuracy = {name: float(rows[name].split(" ± ")[0]) for name in ("real-only", "pretrained+real")}
    paired = float(rows["paired difference against real-only"].split(" ± ")[0])  # same folds: mean of the differences
    assert paired == pytest.approx(accuracy["pretrained+real"] - accuracy["real-only"], abs=0.11)

    before = output.read_text()
    assert transfer.main(argv) == 0  # resumed: nothing left to train, nothing changes
    assert json.loads(output.read_text())["runs"] == json.loads(before)["runs"]
    assert ": " not in capsys.readouterr().out.split("Data:")[0]  # no "<run>: N s" lines

    # both arms again with the real-bin recipe's augmentation, beside the runs above
    assert transfer.main([*argv, "--parts", "pretrain", "--finetune_variant", "heavy-aug-64"]) == 0
    runs = json.loads(output.read_text())["runs"]
    heavy = sorted(key for key in runs if "(heavy-aug-64)" in key)
    assert heavy == ["pretrained+real (heavy-aug-64)/seed0/fold0of2", "pretrained+real (heavy-aug-64)/seed0/fold1of2",
                     "real-only (heavy-aug-64)/seed0/fold0of2", "real-only (heavy-aug-64)/seed0/fold1of2"]
    assert all(runs[key]["settings"]["augment"]["crop_scale"] == 0.6 for key in heavy)
    assert "| pretrained+real (heavy-aug-64) | 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        transfer.main([*argv, "--finetune_variant", "nope"])
    assert done.value.code == 2 and "unknown --finetune_variant nope" in capsys.readouterr().err

    # the synthetic-only model with the recipe's augmentation, and pre-training from it, beside the runs above
    assert transfer.main([*argv, "--synthetic_variant", "heavy-aug-64"]) == 0
    runs = json.loads(output.read_text())["runs"]
    assert runs["synthetic-only (heavy-aug-64)/seed0"]["settings"]["augment"]["crop_scale"] == 0.6
    assert runs["synthetic-only/seed0"]["settings"]["augment"]["crop_scale"] == 0.8
    assert list((tmp_path / "transfer").glob("synthetic-only-seed0-16px-heavy-aug-64.safetensors"))
    assert sorted(key for key in runs if "synthetic heavy-aug-64" in key) == [
        f"pretrained+real (synthetic heavy-aug-64)/seed0/fold{k}of2" for k in range(2)]
    text = capsys.readouterr().out
    assert "| synthetic only (demo recipe with heavy-aug-64, 1 seeds) |" in text
    assert "| synthetic only (demo recipe, 1 seeds) |" in text
    with pytest.raises(SystemExit) as done:
        transfer.main([*argv, "--synthetic_variant", "heavy-aug-96"])
    assert done.value.code == 2 and "--synthetic_variant heavy-aug-96 trains at another resolution" in \
        capsys.readouterr().err

    # pre-trained smaller than it is fine-tuned: its own weights file, and the pre-trained arm fine-tunes from it
    smaller = tmp_path / "smaller.json"
    assert transfer.main([*argv, "--output", str(smaller), "--pretrain_resolution", "12"]) == 0
    runs = json.loads(smaller.read_text())["runs"]
    assert runs["synthetic-only/seed0"]["settings"]["resolution"] == 12
    assert runs["pretrained+real/seed0/fold0of2"]["settings"]["resolution"] == 16
    assert list((tmp_path / "smaller").glob("synthetic-only-seed0-12px.safetensors"))
    assert runs["pretrained+real/seed0/fold0of2"]["test_logits"] != saved["runs"]["pretrained+real/seed0/fold0of2"][
        "test_logits"]


def test_report_only_and_bad_parts(tmp_path, capsys):
    assert transfer.main(["--report_only", "--output", str(tmp_path / "none.json")]) == 0
    with pytest.raises(SystemExit) as done:
        transfer.main(["--real", str(tmp_path), "--output", str(tmp_path / "x.json")])
    assert done.value.code == 2 and "error: no real bins" in capsys.readouterr().err


def _fine_tuning_run(rng: np.random.Generator, seed: int, fold: int, hit: float) -> dict:
    """A saved fine-tuning run of 40 held-out bins whose logits favour the true count in about ``hit`` of them."""
    labels = rng.integers(0, 5, 40)
    logits = rng.normal(0, 1, (40, 5))
    logits[np.arange(40), labels] += 4 * (rng.random(40) < hit)
    return {"part": "pretrain", "variant": "pretrained+real", "seed": seed, "fold": fold, "settings": {"lr": 5e-4},
            "train_s": 1.0, "fit_labels": rng.integers(0, 5, 80).tolist(), "validation_labels": labels.tolist(),
            "validation_logits": logits.tolist(), "test_labels": labels.tolist(), "test_logits": logits.tolist(),
            "test_flip_logits": logits.tolist()}


def test_paired_with_another_results_file_pairs_the_same_seeds_and_folds(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base = {"runs": {f"pretrained+real/seed0/fold{k}of2": _fine_tuning_run(rng, 0, k, 0.3) for k in range(2)}}
    better = {"runs": {f"pretrained+real/seed{s}/fold{k}of2": _fine_tuning_run(rng, s, k, 0.9)
                       for s in range(2) for k in range(2)}}  # seed 1 has no partner in the base file
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "better.json").write_text(json.dumps(better))
    assert transfer.main(["--report_only", "--output", str(tmp_path / "better.json"),
                          "--paired_with", str(tmp_path / "base.json")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "paired difference against" in line)
    cells = [cell.strip() for cell in row.split("|")]
    assert cells[2] == "2", "only the two runs both files hold are paired"
    assert float(cells[3].split(" ± ")[0]) > 30, "the better file's accuracy gain, in points"
    with pytest.raises(SystemExit) as done:
        transfer.main(["--report_only", "--output", str(tmp_path / "better.json"), "--paired_with",
                       str(tmp_path / "none.json")])
    assert done.value.code == 2 and "no results file at --paired_with" in capsys.readouterr().err


def test_spreads_are_sample_standard_deviations_as_in_bench_real_bins():
    """Both benches' "mean ± sd" must be on the same footing, or the README compares unlike spreads."""
    assert transfer.mean_sd([0.1, 0.2, 0.3], 1) == "0.200 ± 0.100"  # population sd would print 0.082
    assert transfer.mean_sd([0.01, -0.03], 100, signed=True) == "-1.0 ± 2.8"
    assert transfer.mean_sd([0.25], 100) == "25.0", "one run has no spread"
    rows = [{"objective": name, "seed": seed, **dict.fromkeys(objective.KEYS, value)}
            for name in ("cross_entropy", "count_aware") for seed, value in enumerate((0.1, 0.2, 0.3))]
    assert objective.summarise(rows)[0][objective.KEYS[0]] == "0.2000 ± 0.1000", "bench.objective's too"
