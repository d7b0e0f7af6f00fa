"""How far synthetic bins are from real ones: image statistics side by side, a grid of real and synthetic bins with the
same counts, and a two-sample classifier test.

    python -m data.realism --real ../shared/abid-real --synthetic DIR [--out outputs/realism] [--max_images 1000]

Both folders are searched for ``*.jpg``; a bin's count comes from ``../metadata/<id>.json`` (the bucket layout) or
from a parent folder named after it (``folders/3/<id>.jpg``). Writes ``realism.json`` and ``realism.md`` (the
statistics and the test), ``realism.png`` (the grid) and ``realism_stats.png`` (the distributions) under ``--out``.

The classifier test is the headline: a logistic regression learns to tell real from synthetic on one half of a
balanced sample and is scored on the other half (and the other way round, so every image is scored once by a model
that never saw it). 50% means the two cannot be told apart by that model; the 95% interval is Wilson's. Two models
are tried, on the image statistics alone and on those plus a 16x12 thumbnail, and the stronger one is the headline.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.cli import UserError, entry_point, parse

# Strap strands are about 1% of the image height apart (~95 cycles per height); the row profile is resampled to
# PROFILE_ROWS rows so that frequency sits well below Nyquist whatever the image size.
PROFILE_ROWS = 384
STRAP_BAND = (50, 160)  # cycles per image height counted as strap-band frequencies
THUMB = (16, 12)
STAT_NAMES = ("width", "height", "aspect", "jpeg_kb", "bits_per_pixel", "mean_r", "mean_g", "mean_b", "std_luma",
              "saturation", "sharpness", "edge_density", "horizontal_edges", "strap_power", "strap_peak")


@dataclass
class RealismArguments:
    real: str = field(metadata={"help": "Folder of real bins (*.jpg searched recursively)."})
    synthetic: str = field(metadata={"help": "Folder of synthetic bins (e.g. written by python -m data.synthetic)."})
    out: str = field(default="outputs/realism", metadata={"help": "Where the report, grid and plots go."})
    max_images: int = field(default=1000, metadata={"help": "At most this many bins from each folder."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampling and the classifier's split."})


# Reading bins
def find_bins(folder: Path, limit: int, seed: int) -> list[tuple[Path, int | None]]:
    """Up to ``limit`` (image, count or None) pairs from ``folder``, a seeded sample when there are more."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    paths = sorted(folder.rglob("*.jpg"))
    if not paths:
        raise UserError(f"no *.jpg under {folder}")
    if len(paths) > limit:
        paths = sorted(random.Random(seed).sample(paths, limit))
    return [(path, count_of(path)) for path in paths]


def count_of(path: Path) -> int | None:
    metadata = path.parent.parent / "metadata" / f"{path.stem}.json"
    if metadata.is_file():
        return int(json.loads(metadata.read_text())["EXPECTED_QUANTITY"])
    return int(path.parent.name) if path.parent.name.isdigit() else None


# Statistics
def strap_spectrum(grey: Image.Image) -> np.ndarray:
    """Power of the row profile (mean over the central columns) per cycles-per-image-height, slow trends removed:
    tight horizontal strands show up as a peak near 95."""
    rows = np.asarray(grey.resize((64, PROFILE_ROWS), Image.Resampling.BILINEAR), np.float32)[:, 16:48].mean(1)
    trend = np.convolve(rows, np.ones(9) / 9, mode="same")
    power = np.abs(np.fft.rfft((rows - trend)[8:-8] * np.hanning(PROFILE_ROWS - 16))) ** 2
    return power * (PROFILE_ROWS - 16) / PROFILE_ROWS  # bins are cycles per (PROFILE_ROWS - 16) rows: close enough


def image_stats(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One bin's statistics (STAT_NAMES), its hue/saturation/value histograms, thumbnail and strap spectrum."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    kb = path.stat().st_size / 1024
    small = rgb.resize((96, 72), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, np.float32)
    hsv = np.asarray(small.convert("HSV"), np.float32)
    grey_image = rgb.convert("L")
    grey = np.asarray(grey_image.resize((256, 192), Image.Resampling.BILINEAR), np.float32)
    laplacian = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    dy, dx = np.abs(np.diff(grey, axis=0))[:, :-1], np.abs(np.diff(grey, axis=1))[:-1, :]
    edges = np.hypot(dx, dy) > 24
    spectrum = strap_spectrum(grey_image)
    band = spectrum[STRAP_BAND[0]:STRAP_BAND[1]]
    stats = np.array([width, height, width / height, kb, kb * 8192 / (width * height), *pixels.reshape(-1, 3).mean(0),
                      grey.std(), hsv[..., 1].mean(), math.log1p(laplacian.var()), edges.mean(),
                      dy[edges].sum() / max(1.0, dx[edges].sum() + dy[edges].sum()),
                      band.sum() / max(1e-6, spectrum[5:].sum()), STRAP_BAND[0] + int(band.argmax())], np.float32)
    histograms = np.concatenate([np.histogram(hsv[..., k], bins=8, range=(0, 256))[0] / hsv[..., k].size
                                 for k in range(3)]).astype(np.float32)
    thumb = np.asarray(small.resize(THUMB, Image.Resampling.BOX), np.float32).ravel() / 255
    return stats, histograms, thumb, spectrum.astype(np.float32)


def describe(stats: np.ndarray) -> dict:
    """Median and 5th/95th percentiles of every statistic."""
    return {name: [round(float(v), 3) for v in np.percentile(stats[:, k], [5, 50, 95])]
            for k, name in enumerate(STAT_NAMES)}


# The two-sample test
def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95% interval for a proportion: honest near 0% and 100%, where the normal one is not."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half / (1 + z * z / n)), min(1.0, centre + half / (1 + z * z / n))


def logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2):
    """An L2-regularised logistic regression (LBFGS on standardised inputs); returns a scoring function."""
    import torch

    x = x.astype(np.float32)
    mean, std = x.mean(0), x.std(0) + 1e-6
    inputs, targets = torch.tensor((x - mean) / std), torch.tensor(y, dtype=torch.float32)
    weights = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss():
        optimiser.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(inputs @ weights + bias, targets)
        value = value + l2 * (weights ** 2).sum()
        value.backward()
        return value

    optimiser.step(loss)
    def predict(z: np.ndarray) -> np.ndarray:
        logits = torch.tensor(((z - mean) / std).astype(np.float32)) @ weights + bias
        return (logits.detach().numpy() > 0).astype(np.float32)

    return predict


def two_sample_test(real: np.ndarray, synthetic: np.ndarray, seed: int) -> dict:
    """Cross-fitted accuracy of telling real (0) from synthetic (1) on a balanced sample, with Wilson's interval."""
    n = min(len(real), len(synthetic))
    gen = np.random.default_rng(seed)
    x = np.concatenate([real[gen.permutation(len(real))[:n]], synthetic[gen.permutation(len(synthetic))[:n]]])
    y = np.concatenate([np.zeros(n), np.ones(n)]).astype(np.float32)
    halves = np.zeros(2 * n, bool)
    for start in (0, n):  # stratified: half of each class in each half
        halves[start + gen.permutation(n)[: n // 2]] = True
    correct = 0
    for train in (halves, ~halves):
        predict = logistic_fit(x[train], y[train])
        correct += int((predict(x[~train]) == y[~train]).sum())
    low, high = wilson(correct, 2 * n)
    return {"accuracy": round(correct / (2 * n), 4), "ci95": [round(low, 4), round(high, 4)], "n": 2 * n}


# Pictures
def grid(real: list[tuple[Path, int | None]], synthetic: list[tuple[Path, int | None]], path: Path, seed: int,
         per_side: int = 3) -> list[int]:
    """Rows of real bins (left) and synthetic bins (right) holding the same count, one row per count both have."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = random.Random(seed)
    by_count = [{}, {}]
    for side, bins in enumerate((real, synthetic)):
        for image, count in bins:
            by_count[side].setdefault(count, []).append(image)
    counts = sorted(c for c in set(by_count[0]) & set(by_count[1]) if c is not None and c <= 10)[:6]
    if not counts:
        counts = [None]
    figure, axes = plt.subplots(len(counts), 2 * per_side, figsize=(2.2 * 2 * per_side, 1.8 * len(counts)),
                                squeeze=False)
    for row, count in enumerate(counts):
        for side in (0, 1):
            images = by_count[side].get(count, [])
            for k, image in enumerate(rng.sample(images, min(per_side, len(images)))):
                with Image.open(image) as picture:
                    axes[row][side * per_side + k].imshow(picture.convert("RGB"))
        axes[row][0].set_ylabel("?" if count is None else f"{count} items")
    for k in range(2 * per_side):
        axes[0][k].set_title("real" if k < per_side else "synthetic")
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
        if not axis.images:
            axis.set_frame_on(False)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return [c for c in counts if c is not None]


def stats_plot(real: np.ndarray, synthetic: np.ndarray, spectra: tuple[np.ndarray, np.ndarray], path: Path) -> None:
    """Histograms of the statistics that matter most, and the mean row-profile spectrum of each set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ("jpeg_kb", "mean_r", "saturation", "std_luma", "sharpness", "edge_density", "horizontal_edges",
             "strap_power")
    figure, axes = plt.subplots(3, 3, figsize=(12, 9))
    for axis, name in zip(axes.ravel(), names):
        k = STAT_NAMES.index(name)
        low, high = np.percentile(np.concatenate([real[:, k], synthetic[:, k]]), [1, 99])
        for data, label in ((real, "real"), (synthetic, "synthetic")):
            axis.hist(np.clip(data[:, k], low, high), bins=30, range=(low, high), alpha=0.5, density=True, label=label)
        axis.set_title(name)
    axis = axes.ravel()[-1]
    for spectrum, label in zip(spectra, ("real", "synthetic")):
        axis.semilogy(np.arange(5, len(spectrum)), spectrum[5:], label=label)
    axis.set_title("row-profile spectrum (cycles per image height)")
    axes.ravel()[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


# The report
def measure(bins: list[tuple[Path, int | None]], desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from tqdm import tqdm

    rows = [image_stats(path) for path, _ in tqdm(bins, desc=desc, unit="img")]
    return tuple(np.stack(column) for column in zip(*rows))


def realism_report(real_dir: Path, synthetic_dir: Path, out: Path, max_images: int = 1000, seed: int = 0) -> dict:
    """Measure both folders, write the report files under ``out``, return the report."""
    real, synthetic = find_bins(real_dir, max_images, seed), find_bins(synthetic_dir, max_images, seed)
    out.mkdir(parents=True, exist_ok=True)
    r_stats, r_hist, r_thumb, r_spec = measure(real, "real bins")
    s_stats, s_hist, s_thumb, s_spec = measure(synthetic, "synthetic bins")
    r_feat, s_feat = np.hstack([r_stats, r_hist]), np.hstack([s_stats, s_hist])
    tests = {"statistics": two_sample_test(r_feat, s_feat, seed),
             "statistics + 16x12 thumbnail": two_sample_test(np.hstack([r_feat, r_thumb]),
                                                             np.hstack([s_feat, s_thumb]), seed)}
    headline = max(tests, key=lambda name: tests[name]["accuracy"])
    counts = grid(real, synthetic, out / "realism.png", seed)
    spectra = (r_spec.mean(0), s_spec.mean(0))
    stats_plot(r_stats, s_stats, spectra, out / "realism_stats.png")
    report = {"real": {"folder": str(real_dir), "images": len(real)},
              "synthetic": {"folder": str(synthetic_dir), "images": len(synthetic)},
              "statistics": {"real": describe(r_stats), "synthetic": describe(s_stats)},
              "hsv_histograms": {"real": r_hist.mean(0).round(4).tolist(),
                                 "synthetic": s_hist.mean(0).round(4).tolist()},
              "two_sample_tests": tests, "headline": {"model": headline, **tests[headline]},
              "grid_counts": counts, "files": ["realism.json", "realism.md", "realism.png", "realism_stats.png"]}
    (out / "realism.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "realism.md").write_text(markdown(report) + "\n")
    return report


def markdown(report: dict) -> str:
    lines = ["| statistic | real: median (5%-95%) | synthetic: median (5%-95%) |", "|---|---|---|"]
    for name in STAT_NAMES:
        real, synthetic = report["statistics"]["real"][name], report["statistics"]["synthetic"][name]
        lines.append(f"| {name} | {real[1]:g} ({real[0]:g}-{real[2]:g}) | {synthetic[1]:g} "
                     f"({synthetic[0]:g}-{synthetic[2]:g}) |")
    lines += ["", "| real-vs-synthetic classifier | held-out accuracy | 95% CI (Wilson) | images |",
              "|---|---|---|---|"]
    for name, test in report["two_sample_tests"].items():
        lines.append(f"| {name} | {100 * test['accuracy']:.1f}% | {100 * test['ci95'][0]:.1f}-"
                     f"{100 * test['ci95'][1]:.1f}% | {test['n']} |")
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = parse(HfArgumentParser(RealismArguments), argv)
    if args.max_images < 4:
        raise UserError(f"--max_images must be at least 4, got {args.max_images}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    report = realism_report(Path(args.real), Path(args.synthetic), Path(args.out), args.max_images, args.seed)
    print(markdown(report))
    head = report["headline"]
    print(f"\nTwo-sample test ({head['model']}): {100 * head['accuracy']:.1f}% held-out accuracy "
          f"(95% CI {100 * head['ci95'][0]:.1f}-{100 * head['ci95'][1]:.1f}%; 50% = indistinguishable). "
          f"Files in {args.out}: {', '.join(report['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
