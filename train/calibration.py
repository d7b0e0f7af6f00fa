"""Temperature scaling, fitted at the end of training and baked into the saved classifier.

A classifier trained to fit its training bins is overconfident on new ones, and verify mode reads its probabilities
as odds (``match`` when P(expected) >= 0.5), so they must mean what they say. One scalar T > 0, fitted on the
validation split by negative log-likelihood, divides the logits; dividing the last linear layer's weight and bias by
T does the same inside the model, so ``pipeline("image-classification")``, the handler, the endpoint and batch
transform all return calibrated probabilities with no extra code. The argmax (the predicted count) never changes.

The head is found generically: the classifier of every transformers image classifier ends in one ``nn.Linear`` over
the labels (``classifier`` for ResNet, ViT, ConvNeXt, EfficientNet, Swin, DeiT, ...); DeiT with a distillation token
averages two such heads, and both are divided.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from train.args import UsageError

MIN_IMAGES = 20  # fewer validation images cannot pin a temperature down
ECE_BINS = 15
HEAD_NAMES = (("classifier",), ("cls_classifier", "distillation_classifier"))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    probabilities = softmax(np.asarray(logits) / temperature)
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the NLL of softmax(logits / T): golden-section search on log T in [1/20, 20].

    The NLL is convex in 1/T, so the one-dimensional search finds the optimum without a solver dependency."""
    low, high = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(60):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(logits, labels, math.exp(b))
    return float(math.exp((low + high) / 2))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width bin of the top probability: its images, mean confidence and accuracy."""
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == labels
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            rows.append({"low": float(low), "high": float(high), "images": int(inside.sum()),
                         "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())})
    return rows


def scores(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> dict[str, float]:
    """NLL, Brier score (summed over classes) and the expected calibration error of the top probability."""
    labels = np.asarray(labels)
    probabilities = softmax(np.asarray(logits) / temperature)
    onehot = np.eye(probabilities.shape[1])[labels]
    ece = sum(row["images"] * abs(row["accuracy"] - row["confidence"])
              for row in reliability(probabilities, labels)) / len(labels)
    return {"nll": nll(logits, labels, temperature), "brier": float(((probabilities - onehot) ** 2).sum(-1).mean()),
            "ece": float(ece)}


def ece_if_calibrated(probabilities: np.ndarray, draws: int = 200, seed: int = 0) -> dict[str, float]:
    """The ECE these probabilities would still show on this many images if they were exactly right: labels drawn
    from them ``draws`` times, scored like ``scores``. A few hundred bins cannot show an ECE near zero even for a
    perfect model, so a measured ECE is read against this floor (mean and sd over the draws)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence, predicted = probabilities.max(axis=-1), probabilities.argmax(axis=-1)
    which = np.clip(np.ceil(confidence * ECE_BINS).astype(int) - 1, 0, ECE_BINS - 1)  # reliability's (low, high]
    in_bin = np.eye(ECE_BINS)[which]  # (images, bins)
    uniform = np.random.default_rng(seed).random((draws, len(confidence), 1))
    labels = (uniform > probabilities.cumsum(axis=-1)[None]).sum(axis=-1)  # (draws, images), drawn from each row
    gaps = ((labels == predicted).astype(np.float64) - confidence) @ in_bin  # (draws, bins): correct - confidence
    ece = np.abs(gaps).sum(axis=-1) / len(confidence)
    return {"mean": float(ece.mean()), "sd": float(ece.std())}


def heads(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """The final linear layer(s) whose outputs are the logits; UsageError when the model has no such head."""
    num_labels = model.config.num_labels
    for names in HEAD_NAMES:
        found = [_last_linear(getattr(model, name, None)) for name in names]
        if all(head is not None and head.out_features == num_labels for head in found):
            return found
    raise UsageError(f"cannot find the classification head of {type(model).__name__} (a final nn.Linear with "
                     f"{num_labels} outputs named classifier); use --calibrate false")


def _last_linear(module: torch.nn.Module | None) -> torch.nn.Linear | None:
    """``module`` itself if it is a Linear, or its last submodule if that is one (ResNet: Flatten then Linear)."""
    if isinstance(module, torch.nn.Linear):
        return module
    if module is None:
        return None
    leaves = [m for m in module.modules() if not list(m.children())]
    has_parameters = [m for m in leaves if any(True for _ in m.parameters())]
    last = has_parameters[-1] if has_parameters else None
    return last if isinstance(last, torch.nn.Linear) and leaves[-1] is last else None


@torch.no_grad()
def bake(model: torch.nn.Module, temperature: float) -> None:
    """Divide the head's weight and bias by T, so the model's logits are the calibrated logits."""
    for head in heads(model):
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    model.config.temperature_scaling = float(temperature)  # recorded in config.json; transformers ignores it


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str) -> Path:
    """Reliability diagram: accuracy against confidence per bin, one line per curve, the diagonal is perfect."""
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for label, (probabilities, labels) in curves.items():
        rows = reliability(probabilities, labels)
        ece = scores(np.log(np.clip(probabilities, 1e-12, None)), labels)["ece"]
        axes.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o",
                  label=f"{label} (ECE {ece:.3f})")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("top probability (confidence)")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="upper left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def calibrate(model: torch.nn.Module, splits: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> dict:
    """Fit T on ``splits["validation"]`` (logits, labels), bake it into ``model``, score every split before and
    after, and draw the reliability diagram. Too small a validation split skips it, with the reason."""
    logits, labels = splits["validation"]
    if len(labels) < MIN_IMAGES:
        return {"skipped": f"the validation split has {len(labels)} images; temperature scaling needs {MIN_IMAGES}"}
    temperature = fit_temperature(logits, labels)
    bake(model, temperature)
    report: dict = {"temperature": temperature}
    curves = {}
    for name, (split_logits, split_labels) in splits.items():
        report[name] = {"before": scores(split_logits, split_labels),
                        "after": scores(split_logits, split_labels, temperature),
                        "ece_if_calibrated": ece_if_calibrated(softmax(split_logits / temperature))}
    shown = "test" if "test" in splits else "validation"
    split_logits, split_labels = splits[shown]
    curves[f"{shown}, as trained"] = (softmax(split_logits), split_labels)
    curves[f"{shown}, T = {temperature:.2f}"] = (softmax(split_logits / temperature), split_labels)
    plot_reliability(curves, path, f"Reliability ({shown} split; T fitted on validation)")
    return report


def flatten(report: dict) -> dict[str, float]:
    """all_results.json entries: calibration_temperature, <split>_{nll,brier,ece}[_before_calibration] and
    <split>_ece_if_calibrated."""
    if "temperature" not in report:
        return {}
    metrics = {"calibration_temperature": report["temperature"]}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split in report:
            for name, value in report[split]["before"].items():
                metrics[f"{prefix}_{name}_before_calibration"] = value
            for name, value in report[split]["after"].items():
                metrics[f"{prefix}_{name}"] = value
            if "ece_if_calibrated" in report[split]:
                metrics[f"{prefix}_ece_if_calibrated"] = report[split]["ece_if_calibrated"]["mean"]
    return metrics


def describe(report: dict) -> str:
    """The model card's and results.md's paragraph on calibration."""
    if "temperature" not in report:
        return f"Not calibrated: {report.get('skipped', 'turned off (--calibrate false)')}."
    lines = [f"Temperature scaling: T = {report['temperature']:.3f}, fitted on the validation split by NLL and "
             f"baked into the classifier (its last layer's weight and bias are divided by T), so every probability "
             f"this model returns is the calibrated one. The last column is the ECE that exactly right "
             f"probabilities would still show on a split of that size (labels drawn from them; mean ± sd): a measured "
             f"ECE near it is as calibrated as that split can tell.", "",
             "| Split | NLL before → after | Brier before → after | ECE before → after | ECE if calibrated |",
             "|---|---|---|---|---|"]
    for split in ("validation", "test"):
        if split in report:
            before, after = report[split]["before"], report[split]["after"]
            floor = report[split].get("ece_if_calibrated")
            shown = f"{floor['mean']:.3f} ± {floor['sd']:.3f}" if floor else "—"
            lines.append(f"| {split} | {before['nll']:.3f} → {after['nll']:.3f} | {before['brier']:.3f} → "
                         f"{after['brier']:.3f} | {before['ece']:.3f} → {after['ece']:.3f} | {shown} |")
    return "\n".join(lines) + "\n"
