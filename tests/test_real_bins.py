"""bench.real_bins: the weight-average variant keeps the moving average of its run, the centre-view variants keep
the pod's centre, the table and its picture, and the ensemble of saved runs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from bench import real_bins
from bench.report import machine


def tiny_run(**settings) -> torch.nn.Module:
    """Two steps of the recipe's variant on 8 random 16-px images, from the same seed every time."""
    rng = random.Random(0)
    images = [Image.new("RGB", (20, 20), tuple(rng.randrange(256) for _ in range(3))) for _ in range(8)]
    variant = real_bins.BASE | real_bins.VARIANTS["heavy-aug-64"] | {"resolution": 16, "epochs": 1, "batch_size": 4}
    return real_bins.train(variant | settings, images, np.arange(8) % 5, [str(i) for i in range(8)], seed=0)


def test_moving_average_of_the_weights_is_the_model_kept(one_torch_thread):
    plain = tiny_run().state_dict()
    last = tiny_run(ema=1e-9).state_dict()  # decay ~0: the average is the last step's weights and statistics
    averaged = tiny_run(ema=0.5).state_dict()
    assert set(last) == set(plain) == set(averaged)
    for name, value in plain.items():
        assert torch.allclose(last[name].float(), value.float(), atol=1e-6), name
    moved = [name for name, value in plain.items() if value.is_floating_point()
             and not torch.allclose(averaged[name], value, atol=1e-6)]
    assert any("running_mean" in name for name in moved) and any("weight" in name for name in moved)


def fake_run(variant: str, seed: int, fold: int, skill: float) -> dict:
    """A saved run whose logits lean towards the true count by ``skill``."""
    gen = np.random.default_rng(100 * seed + fold)

    def logits(labels: np.ndarray) -> list:
        return (gen.normal(0, 1, (len(labels), 5)) + skill * np.eye(5)[labels]).tolist()

    fit, validation, test = (gen.integers(0, 5, n) for n in (200, 60, 80))
    return {"variant": variant, "seed": seed, "fold": fold, "train_s": 1.0, "fit_labels": fit.tolist(),
            "validation_labels": validation.tolist(), "test_labels": test.tolist(),
            "validation_logits": logits(validation), "test_logits": logits(test), "test_flip_logits": logits(test)}


def test_centre_views_keep_the_middle_of_each_side():
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    image.paste((0, 0, 255), (20, 10, 180, 90))  # the central 80% of each side
    kept = real_bins.centre(image, 0.8)
    assert kept.size == (160, 80) and set(kept.getdata()) == {(0, 0, 255)}
    assert real_bins.centre(image, 1.0) is image
    assert [im.size for im in real_bins.shrink([image], 32, 0.8)] == [(80, 40)], "shorter side 1.25 x 32"


def test_report_and_plot_give_every_variant_beside_the_constants(tmp_path):
    runs = [fake_run(name, seed, 0, skill) for name, skill in (("weak", 0.2), ("strong", 3.0)) for seed in (0, 1)]
    saved = {"data": "fake bins", "machine": machine(), "runs": {f"{r['variant']}/{r['seed']}": r for r in runs}}
    scores = real_bins.scored_by_variant(saved)
    _, table, pooled = real_bins.report(saved, scores).split("\n\n")
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in table.splitlines()}
    assert [line.split("|")[1].strip() for line in pooled.splitlines()] == ["variant", "---", "weak", "strong"]
    assert list(rows)[2:] == ["weak", "strong", "constant (majority / central count of the training part)"]
    strong = np.mean([real_bins.scored(r)["accuracy"] for r in runs[2:]])
    assert rows["strong"].startswith(f"{100 * strong:.1f} ± ") and float(rows["strong"].split()[0]) > 60
    picture = real_bins.plot(scores, "fake bins", tmp_path / "real_bins.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ensemble_averages_the_runs_of_each_fold():
    runs = {f"a/{seed}/{fold}": fake_run("a", seed, fold, 1.0) for seed in (0, 1) for fold in (0, 1)}
    for fold in (0, 1):  # every seed holds out the same bins of a fold, as folds_of makes them
        runs[f"a/1/{fold}"]["test_labels"] = runs[f"a/0/{fold}"]["test_labels"]
    saved = {"runs": runs}
    scores = real_bins.ensemble(saved, real_bins.scored_by_variant(saved), ["a"])
    assert scores["runs"] == 4
    assert scores["single_accuracy"] == pytest.approx(np.mean([real_bins.scored(r)["accuracy"] for r in runs.values()]))
    twins = {"runs": {"x": runs["a/0/0"], "y": runs["a/0/0"] | {"variant": "b"}}}
    alone = real_bins.scored(runs["a/0/0"])
    both = real_bins.ensemble(twins, real_bins.scored_by_variant(twins), ["a", "b"])
    assert both["accuracy"] == pytest.approx(alone["accuracy"])
    assert both["rmse_expected"] == pytest.approx(alone["rmse_expected"])
    runs["a/1/0"]["test_labels"] = list(reversed(runs["a/0/0"]["test_labels"]))
    with pytest.raises(ValueError, match="different bins"):
        real_bins.ensemble(saved, {}, ["a"])
    with pytest.raises(ValueError, match="no saved runs"):
        real_bins.ensemble(saved, {}, ["c"])


def test_best_caught_2_flags_at_the_splits_own_false_alarm_share():
    """20 bins of 3 items: 19 sure of it (P 0.9; P(1 item) 0.02, P(5) 0.08), one not (P 0.05; 0.5 and 0.45)."""
    sure, unsure = [0.02, 0.0, 0.9, 0.0, 0.08], [0.5, 0.0, 0.05, 0.0, 0.45]
    probabilities, labels = np.array([sure] * 19 + [unsure]), np.full(20, 2)
    assert real_bins.best_caught_2(probabilities, labels, 0.05) == 1.0, "one false alarm of 20 allowed: all flagged"
    assert real_bins.best_caught_2(probabilities, labels, 0.0) == 19 / 40, "none allowed: only the records at 0.02"


def test_pooled_calibration_scores_each_seeds_folds_together():
    runs = {f"a/{seed}/{fold}": fake_run("a", seed, fold, 2.0) for seed in (0, 1) for fold in (0, 1)}
    rows = real_bins.pooled_calibration({"runs": runs})
    assert [(row["variant"], row["seeds"], row["bins per seed"]) for row in rows] == [("a", 2, "160")]
    eces = []
    for seed in (0, 1):
        folds = [runs[f"a/{seed}/{fold}"] for fold in (0, 1)]
        scaled = np.concatenate([np.asarray(r["test_logits"]) / real_bins.calibration.fit_temperature(
            np.asarray(r["validation_logits"]), np.asarray(r["validation_labels"])) for r in folds])
        eces.append(real_bins.calibration.scores(scaled, np.concatenate([r["test_labels"] for r in folds]))["ece"])
    assert rows[0]["ECE after T, folds pooled"] == f"{np.mean(eces):.3f} ± {np.std(eces, ddof=1):.3f}"
    assert float(rows[0]["ECE if calibrated, pooled"].split()[0]) > 0


def test_mixup_blends_the_batch_with_a_shuffled_copy_and_weights_both_labels():
    pixels, targets = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 2, 3, 4, 0])
    seen = []

    def model(pixel_values):
        seen.append(pixel_values)
        return type("Out", (), {"logits": pixel_values.flatten(1)[:, :5]})

    loss = real_bins.loss_of(real_bins.BASE)
    value = real_bins.mixed_loss(model, loss, pixels, targets, 0.2, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    weight, order = rng.beta(0.2, 0.2), torch.from_numpy(rng.permutation(6))
    assert torch.allclose(seen[0], weight * pixels + (1 - weight) * pixels[order])
    logits = {"logits": seen[0].flatten(1)[:, :5]}
    assert value == pytest.approx(float(weight * loss(logits, targets) + (1 - weight) * loss(logits, targets[order])))


def test_aspect_gives_wider_inputs_and_the_run_trains_on_them(one_torch_thread):
    image = Image.new("RGB", (130, 100), (10, 20, 30))
    assert real_bins.to_tensor([image], 16, 1.25).shape == (1, 3, 16, 20)
    model = tiny_run(aspect=1.25, mixup=0.2, label_smoothing=0.1)
    assert len(real_bins.logits_of(model, [image], 16, 1.25)[0]) == 5
