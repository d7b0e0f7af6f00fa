"""Synthetic pre-training inside ``train.run`` (``--synthetic_pretrain N``): before the dataset's own bins, the same
network learns to count on N synthetic bins, which it then starts from.

On about a thousand real bins this is the largest gain measured (bench.transfer): the counting carries over even
though the look does not. Everything lives in ``OUTPUT_DIR/synthetic-pretrain/``: the bins (data.synthetic, removed
once built), their dataset (data.build), the pre-trained model; each step resumes, and a finished model is reused.
Its settings are saved beside it, and a folder made with other settings is refused rather than silently reused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from data import build, synthetic
from train.args import ModelArguments, UsageError

logger = logging.getLogger("train.pretrain")
# Train on 95% of the synthetic bins; the 5% validation split only has to exist (no checkpoint is picked on it).
SPLIT_RATIOS = [0.95, 0.05, 0.0]
# Synthetic bins are stored at this shorter side: twice the CPU recipes' 64 px, and 4x fewer pixels to decode than
# data.build's default.
SHORTER_SIDE = 128
FOLDER = "synthetic-pretrain"  # inside the run's output_dir; never pushed with the model (train.run.push)


def folder(output_dir: str) -> Path:
    return Path(output_dir) / FOLDER


def settings(model_args: ModelArguments, image_size: int | None, seed: int) -> dict:
    """What determines the pre-trained model: a folder made with other settings is not reused."""
    return {"synthetic_bins": model_args.synthetic_pretrain, "generator_seed": seed,
            "generator_version": synthetic.GENERATOR_VERSION, "recipe": model_args.synthetic_pretrain_config,
            "model": model_args.model_name_or_path, "image_size": image_size}


def claim(work: Path, wanted: dict, overwrite: bool) -> None:
    """Start ``work`` or check it was made with ``wanted``; ``overwrite`` starts the pre-trained model over."""
    record = work / "settings.json"
    if record.is_file() and json.loads(record.read_text()) != wanted:
        raise UsageError(f"{work} was made with other pre-training settings; remove it or use another --output_dir")
    if overwrite and (work / "model").is_dir():
        shutil.rmtree(work / "model")
    work.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(wanted, indent=1))


def prepare_dataset(work: Path, count: int, seed: int) -> Path:
    """Generate ``count`` synthetic bins and build their dataset (both resume where they stopped); the bins are
    removed once the dataset holds them (about 50 KB each at full size, ten times their copy in the dataset)."""
    dataset, bins = work / "dataset", work / "bins"
    if (dataset / "build_report.json").is_file():  # data.build writes it last: the dataset is whole
        return dataset
    processes = os.cpu_count() or 1
    synthetic.generate(bins, count, seed, num_proc=processes)
    build.build(build.SourceArguments(source=str(bins)), build.SelectionArguments(split_ratios=SPLIT_RATIOS),
                build.OutputArguments(output=str(dataset), shorter_side=SHORTER_SIDE, num_proc=processes))
    shutil.rmtree(bins)
    return dataset


def arguments(model_args: ModelArguments, image_size: int | None, dataset: Path, model_dir: Path,
              seed: int) -> list[str]:
    """train.run's options for the pre-training: its recipe, on the same network, at the real run's ``image_size``
    when it has one (else the recipe's, which the real run then inherits from the pre-trained processor).

    No temperature or audit: the real run calibrates its own model, and a head divided by T would start it off
    elsewhere than where pre-training left it.
    """
    argv = ["--config", model_args.synthetic_pretrain_config, "--dataset", str(dataset),
            "--output_dir", str(model_dir), "--model_name_or_path", model_args.model_name_or_path,
            "--seed", str(seed), "--calibrate", "false", "--audit", "false", "--synthetic_pretrain", "0"]
    if image_size:
        argv += ["--image_size", str(image_size)]
    return argv


def is_finished(model_dir: Path) -> bool:
    """train.run writes all_results.json after the model, so its presence means the model is whole."""
    return (model_dir / "all_results.json").is_file() and (model_dir / "model.safetensors").is_file()
