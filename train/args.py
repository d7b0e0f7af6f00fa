"""Arguments of ``python -m train.run``: four ``@dataclass`` groups plus ``transformers.TrainingArguments``.

Parsed by ``HfArgumentParser`` from the command line (``--key value``, which is also how SageMaker passes
hyperparameters) and from a recipe: ``--config FILE`` names a JSON or YAML file of any of these options (e.g.
``train/recipes/small-real-cpu.json``), and options on the command line override it. A SageMaker hyperparameter
``config`` names the file the same way. Inside a SageMaker training job the defaults follow the container contract:
data from ``SM_CHANNEL_{TRAIN,VALIDATION,TEST}``, the model to ``SM_MODEL_DIR``, checkpoints to ``/opt/ml/checkpoints``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

from core import cli
from core.cli import UserError

SAGEMAKER_CHECKPOINTS = "/opt/ml/checkpoints"
ROOT = Path(__file__).resolve().parents[1]
# Options holding a path that a recipe may give relative to the repository (train/configs/...).
REPOSITORY_PATHS = ("model_name_or_path", "processor_name_or_path")


class UsageError(UserError):
    """Bad input or arguments: one line for the user, exit code 2, nothing overwritten."""


@dataclass
class DataArguments:
    dataset: str | None = field(default=None, metadata={
        "help": "A folder written by data.build, or a Hub dataset id. Default in SageMaker: the SM_CHANNEL_* folders."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub dataset revision."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    validation_split: str = field(default="validation", metadata={
        "help": "Split to select the best checkpoint on; carved from train (validation_fraction) when absent."})
    test_split: str = field(default="test", metadata={"help": "Split reported at the end (skipped when absent)."})
    validation_fraction: float = field(default=0.1, metadata={"help": "Share of train held out if no validation."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate train (quick runs)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation and test."})


@dataclass
class ModelArguments:
    model_name_or_path: str = field(default="google/vit-base-patch16-224-in21k", metadata={
        "help": "Any AutoModelForImageClassification checkpoint (Hub id or folder), or a folder with config.json + "
                "preprocessor_config.json and no weights to train from scratch (see train/configs/)."})
    processor_name_or_path: str | None = field(default=None, metadata={
        "help": "Image processor to use instead of the checkpoint's (e.g. a full-view resize for counting)."})
    model_revision: str = field(default="main", metadata={"help": "Hub revision of the checkpoint."})
    freeze_backbone: bool = field(default=False, metadata={"help": "Train only the classification head."})
    synthetic_pretrain: int = field(default=0, metadata={
        "help": "First pre-train the model on this many synthetic bins (generated into OUTPUT_DIR/synthetic-pretrain/"
                "), then train on the dataset from there (train/pretrain.py); 0: off."})
    synthetic_pretrain_config: str = field(default="train/recipes/synthetic-pretrain-cpu.json", metadata={
        "help": "The pre-training's recipe; it trains this run's model, at this run's --image_size if given "
                "(else the recipe's)."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Allow custom model code from the checkpoint's repository (off: only run code you have read)."})


@dataclass
class CountingArguments:
    objective: str = field(default="cross_entropy", metadata={
        "help": "cross_entropy; count_aware: cross-entropy plus a penalty on the squared error of the expected "
                "(probability-weighted) count; ordinal: cross-entropy on soft targets that give neighbour_mass to "
                "the counts one away. The last two use the order of the counts.",
        "choices": ["cross_entropy", "count_aware", "ordinal"]})
    count_loss_weight: float = field(default=0.5, metadata={"help": "Weight of the count penalty (count_aware)."})
    neighbour_mass: float = field(default=0.4, metadata={
        "help": "Target probability shared by the counts k-1 and k+1 of a bin of k items (ordinal)."})
    image_size: int | None = field(default=None, metadata={
        "help": "Resize inputs to this many pixels square instead of the processor's size (saved with the model)."})
    calibrate: bool = field(default=True, metadata={
        "help": "Fit temperature scaling on the validation split and bake it into the saved classifier."})
    audit: bool = field(default=True, metadata={
        "help": "Play the inventory audit on validation and test; save default verify thresholds (verify.json)."})
    target_false_alarm: float = field(default=0.05, metadata={
        "help": "Share of correctly recorded bins the saved verify thresholds may flag as mismatch."})
    class_weighting: str = field(default="none", metadata={
        "help": "Loss weights against class imbalance, from the train histogram.",
        "choices": ["none", "inverse", "sqrt_inverse"]})
    weighted_sampler: bool = field(default=False, metadata={"help": "Sample train images inversely to class size."})
    augment: bool = field(default=True, metadata={"help": "Random crop, flip, rotation and colour jitter in training."})
    crop_scale: float = field(default=0.8, metadata={"help": "Smallest area fraction kept by the random crop."})
    rotation_degrees: float = field(default=10.0, metadata={"help": "Largest random rotation."})
    color_jitter: float = field(default=0.2, metadata={"help": "Brightness/contrast/saturation jitter strength."})
    channels_last: bool | None = field(default=None, metadata={
        "help": "channels_last memory format (default: on for convolutional models on a GPU)."})
    torch_threads: int | None = field(default=None, metadata={
        "help": "torch threads of the training process (default: torch's, one per core). 1 is much faster on a "
                "CPU shared with other work, where spinning threads wait on each other."})
    early_stopping_patience: int | None = field(default=None, metadata={
        "help": "Stop after this many evaluations without improvement of metric_for_best_model."})

    def __post_init__(self) -> None:
        """Refuse values that would train something else than asked without failing (``core.cli.parse`` makes
        the ValueError one error line)."""
        limits = ((self.image_size is None or self.image_size > 0, "image_size", "a positive number of pixels"),
                  (0 < self.crop_scale <= 1, "crop_scale", "an area fraction in (0, 1]"),
                  (self.rotation_degrees >= 0, "rotation_degrees", ">= 0"),
                  (0 <= self.color_jitter < 1, "color_jitter", "in [0, 1)"),
                  (0 < self.target_false_alarm < 1, "target_false_alarm", "a share in (0, 1)"),
                  (0 <= self.neighbour_mass < 1, "neighbour_mass", "in [0, 1)"),
                  (self.count_loss_weight >= 0, "count_loss_weight", ">= 0"),
                  (self.torch_threads is None or self.torch_threads >= 1, "torch_threads", ">= 1"),
                  (self.early_stopping_patience is None or self.early_stopping_patience >= 1,
                   "early_stopping_patience", ">= 1"))
        for ok, name, rule in limits:
            if not ok:
                raise ValueError(f"--{name} must be {rule}, got {getattr(self, name)}")


@dataclass
class OutputArguments:
    model_dir: str | None = field(default=None, metadata={
        "help": "Where the final model, metrics, plots and card go (default: output_dir; SageMaker: SM_MODEL_DIR)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Start over even if output_dir holds checkpoints (default: resume from the last one)."})
    profile: bool = field(default=False, metadata={
        "help": "Profile training steps with torch.profiler: a Chrome/TensorBoard trace in <output_dir>/profile/, "
                "a summary in the log and <output_dir>/profile.md (train/profiling.py)."})
    profile_steps: str = field(default="3-7", metadata={
        "help": "FIRST-LAST optimizer steps of this run that --profile records (the first ones warm up)."})
    config: str | None = field(default=None, metadata={
        "help": "A JSON or YAML file of any of these options (a recipe, e.g. train/recipes/small-real-cpu.json); "
                "options on the command line override it."})


ARGUMENT_GROUPS = (DataArguments, ModelArguments, CountingArguments, OutputArguments, TrainingArguments)


def defaults() -> dict:
    """Training defaults for bin counting, and the SageMaker container contract when its variables are set."""
    cuda = torch.cuda.is_available()
    values = {
        "eval_strategy": "epoch", "save_strategy": "epoch", "logging_strategy": "steps", "logging_steps": 10,
        "save_total_limit": 2, "load_best_model_at_end": True, "metric_for_best_model": "accuracy",
        "remove_unused_columns": False, "report_to": "none", "num_train_epochs": 10,
        "per_device_train_batch_size": 32, "per_device_eval_batch_size": 64, "learning_rate": 5e-5,
        "warmup_steps": 0.1, "weight_decay": 0.01, "lr_scheduler_type": "cosine",
        "dataloader_num_workers": min(8, os.cpu_count() or 1), "dataloader_persistent_workers": False,
        "dataloader_pin_memory": cuda,
        "bf16": cuda and torch.cuda.is_bf16_supported(), "fp16": cuda and not torch.cuda.is_bf16_supported(),
    }
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not cuda:
        values["use_cpu"] = True  # several CPU processes: DDP over gloo (accelerate's MULTI_CPU) needs use_cpu
    if "SM_MODEL_DIR" in os.environ:
        values |= {"model_dir": os.environ["SM_MODEL_DIR"], "output_dir": SAGEMAKER_CHECKPOINTS}
    return values


def parser() -> HfArgumentParser:
    parse = HfArgumentParser(ARGUMENT_GROUPS)
    parse.set_defaults(**defaults())
    return parse


def parse_args(argv: list[str] | None = None) -> tuple:
    """(data, model, counting, output, training) from the command line over the ``--config`` file's values.

    A lone ``FILE.json`` / ``FILE.yaml`` argument is read as ``--config FILE``, as HF's example scripts do.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        argv = ["--config", argv[0]]
    parse = parser()
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    config = pre.parse_known_args(argv)[0].config
    if config:
        parse.set_defaults(**read_config(config))
    return cli.parse(parse, argv)


def read_config(path: str) -> dict:
    """The file's options, each parsed by train.run's own parser as if given on the command line; UsageError names
    the file and the key of the first problem."""
    file = Path(path)
    if not file.is_file() and not file.is_absolute() and (ROOT / file).is_file():
        file = ROOT / file  # a recipe named relative to the repository, from another working directory
    try:
        text = file.read_text()
        values = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except OSError as error:
        raise UsageError(f"cannot read config {path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise UsageError(f"config {path} does not parse: {' '.join(str(error).split())}") from None
    if not isinstance(values, dict):
        raise UsageError(f"config {path} must hold an object of option names and values")
    reader = _ConfigReader()
    converted = {}
    for key, value in values.items():
        converted |= reader.option(str(key), value, f"config {path}")
        if key in REPOSITORY_PATHS and isinstance(value, str) and not Path(value).exists() and (ROOT / value).exists():
            converted[key] = str(ROOT / value)
    return converted


class _ConfigReader(HfArgumentParser):
    """train.run's parser, reading one config option at a time: a problem raises instead of exiting."""

    class Problem(Exception):
        pass

    def __init__(self) -> None:
        super().__init__(ARGUMENT_GROUPS, allow_abbrev=False)
        self.unset = object()
        self.destinations = set(vars(self.parse_known_args([])[0]))
        self.set_defaults(**dict.fromkeys(self.destinations, self.unset))

    def error(self, message: str):
        raise self.Problem(message.split(": ", 1)[-1])  # argparse's "argument --key: " prefix; the caller names it

    def option(self, key: str, value, where: str) -> dict:
        """{destination: value} for one file entry, as ``--key value`` would set it."""
        if key == "config" or key.startswith("-"):
            raise UsageError(f"{where}: unknown option {key!r} (see python -m train.run --help)")
        if value is None and key in self.destinations:
            return {key: None}
        try:
            parsed, left = self.parse_known_args([f"--{key}", *_tokens(value)])
        except self.Problem as problem:
            raise UsageError(f"{where}: option {key!r}: {problem}") from None
        if left and left[0] == f"--{key}":
            raise UsageError(f"{where}: unknown option {key!r} (see python -m train.run --help)")
        if left:
            raise UsageError(f"{where}: option {key!r} takes one value, got {value!r}")
        return {dest: got for dest, got in vars(parsed).items() if got is not self.unset}


def _tokens(value) -> list[str]:
    """A config value as command-line words: lists are several words, objects one JSON word."""
    if isinstance(value, list):
        return [word for item in value for word in _tokens(item)]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, dict):
        return [json.dumps(value)]
    return [str(value)]
