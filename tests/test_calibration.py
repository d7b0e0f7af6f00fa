"""Temperature scaling: the fit recovers a known temperature, baking it into the head divides every architecture's
logits by T, and the pipeline then returns softmax(logits / T) with no extra code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, pipeline

from tests.conftest import TINY_CONFIGS
from train import calibration
from train.args import UsageError

NAMES = ["0", "1", "2", "3", "4", "5"]


def tiny(arch: str, cls=AutoModelForImageClassification, seed: int = 0) -> torch.nn.Module:
    config = AutoConfig.from_pretrained(TINY_CONFIGS / arch, id2label=dict(enumerate(NAMES)),
                                        label2id={n: i for i, n in enumerate(NAMES)})
    torch.manual_seed(seed)
    return cls.from_config(config).eval() if cls is AutoModelForImageClassification else cls(config).eval()


def bin_image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (90, 120, 3), dtype=np.uint8))


def test_fit_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, (4000, 5))
    labels = np.array([rng.choice(5, p=p) for p in calibration.softmax(true_logits)])
    overconfident = 2.5 * true_logits
    temperature = calibration.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(2.5, rel=0.08)
    before, after = calibration.scores(overconfident, labels), calibration.scores(overconfident, labels, temperature)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] and after["brier"] < before["brier"]
    assert after["ece"] < 0.03


def test_scores_on_a_hand_built_example():
    logits = np.log(np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]))
    labels = np.array([0, 1, 1])
    result = calibration.scores(logits, labels)
    assert result["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8])))
    assert result["brier"] == pytest.approx(np.mean([2 * 0.1**2, 2 * 0.6**2, 2 * 0.2**2]))
    # bins of the top probability: 0.9 (right), 0.6 (wrong), 0.8 (right): |1-.9| + |0-.6| + |1-.8| over 3
    assert result["ece"] == pytest.approx((0.1 + 0.6 + 0.2) / 3)


@pytest.mark.parametrize("arch", ["tiny-resnet", "tiny-vit", "tiny-convnext", "tiny-efficientnet", "tiny-swin",
                                  "tiny-deit"])
def test_baking_divides_the_logits_by_t(arch, one_torch_thread):
    model = tiny(arch)
    pixels = torch.randn(2, 3, *_side(arch))
    with torch.no_grad():
        before = model(pixel_values=pixels).logits
        calibration.bake(model, 2.7)
        after = model(pixel_values=pixels).logits
    torch.testing.assert_close(after, before / 2.7, rtol=1e-4, atol=1e-5)
    assert model.config.temperature_scaling == 2.7


def test_deit_with_distillation_heads_divides_both(one_torch_thread):
    from transformers import DeiTForImageClassificationWithTeacher

    model = tiny("tiny-deit", DeiTForImageClassificationWithTeacher)
    assert len(calibration.heads(model)) == 2
    pixels = torch.randn(2, 3, *_side("tiny-deit"))
    with torch.no_grad():
        before = model(pixel_values=pixels).logits
        calibration.bake(model, 1.9)
        torch.testing.assert_close(model(pixel_values=pixels).logits, before / 1.9, rtol=1e-4, atol=1e-5)


def test_a_model_without_a_linear_head_is_refused():
    model = tiny("tiny-resnet")
    model.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 6), torch.nn.Softmax(-1))
    with pytest.raises(UsageError, match="cannot find the classification head"):
        calibration.heads(model)


def test_ece_floor_is_what_right_probabilities_show_at_that_size():
    """Labels drawn from the probabilities themselves (a perfectly calibrated model) measure an ECE inside the floor's
    spread; the floor shrinks as the split grows, is zero for certain predictions, and is the same on every call."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1.5, (5000, 5))
    probabilities = calibration.softmax(logits)
    measured = []
    for draw in range(40):
        labels = (rng.random((300, 1)) > probabilities[:300].cumsum(-1)).sum(-1)
        measured.append(calibration.scores(logits[:300], labels)["ece"])
    small = calibration.ece_if_calibrated(probabilities[:300])
    assert abs(np.mean(measured) - small["mean"]) < 2 * small["sd"] / np.sqrt(len(measured)) + 0.005
    assert 0.02 < small["mean"] < 0.12 and small["sd"] > 0
    large = calibration.ece_if_calibrated(probabilities)
    assert large["mean"] < small["mean"] / 3
    assert calibration.ece_if_calibrated(np.eye(5)[rng.integers(0, 5, 50)]) == {"mean": 0.0, "sd": 0.0}
    assert calibration.ece_if_calibrated(probabilities[:300]) == small
    overconfident = calibration.softmax(3 * logits[:300])
    labels = (rng.random((300, 1)) > probabilities[:300].cumsum(-1)).sum(-1)
    floor = calibration.ece_if_calibrated(overconfident)
    assert calibration.scores(3 * logits[:300], labels)["ece"] > floor["mean"] + 4 * floor["sd"]


def test_saved_model_pipeline_returns_calibrated_probabilities(tmp_path, one_torch_thread):
    model = tiny("tiny-resnet")
    processor = AutoImageProcessor.from_pretrained(TINY_CONFIGS / "tiny-resnet")
    image = bin_image()
    with torch.no_grad():
        logits = model(**processor(images=[image], return_tensors="pt")).logits[0]
    rng = np.random.default_rng(1)
    validation = (rng.normal(0, 3, (40, 6)), rng.integers(0, 6, 40))
    report = calibration.calibrate(model, {"validation": validation}, tmp_path / "calibration.png")
    temperature = report["temperature"]
    assert temperature > 1.5, "random labels: the fit must soften the logits"
    floor = report["validation"]["ece_if_calibrated"]
    assert 0 < floor["mean"] < 1 and calibration.flatten(report)["eval_ece_if_calibrated"] == floor["mean"]
    assert "ECE if calibrated" in calibration.describe(report)
    assert (tmp_path / "calibration.png").stat().st_size > 5000
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    scores = pipeline("image-classification", model=str(tmp_path / "model"), top_k=6)(image)
    got = {s["label"]: s["score"] for s in scores}
    expected = torch.softmax(logits / temperature, -1).numpy()
    assert [got[name] for name in NAMES] == pytest.approx(expected.tolist(), abs=1e-5)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        again = reloaded(**processor(images=[image], return_tensors="pt")).logits[0]
    torch.testing.assert_close(again, logits / temperature, rtol=1e-4, atol=1e-5)


def test_too_small_a_validation_split_is_skipped_with_the_reason(tmp_path):
    model = tiny("tiny-resnet")
    weight = model.classifier[1].weight.clone()
    report = calibration.calibrate(model, {"validation": (np.zeros((5, 6)), np.zeros(5, dtype=int))},
                                   tmp_path / "c.png")
    assert "needs 20" in report["skipped"] and calibration.flatten(report) == {}
    assert torch.equal(model.classifier[1].weight, weight) and not (tmp_path / "c.png").exists()
    assert "Not calibrated" in calibration.describe(report)


def _side(arch: str) -> tuple[int, int]:
    """The input side the architecture expects (transformers' patch models fix it in the config)."""
    side = getattr(AutoConfig.from_pretrained(TINY_CONFIGS / arch), "image_size", 64)
    return (side, side) if isinstance(side, int) else tuple(side)
