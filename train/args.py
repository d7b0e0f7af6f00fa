"""Arguments of ``python -m train.run``: four ``@dataclass`` groups plus ``transformers.TrainingArguments``.

Parsed by ``HfArgumentParser`` from the command line (``--key value``, which is also how SageMaker passes
hyperparameters) or from one JSON file. Inside a SageMaker training job the defaults follow the container contract:
data from ``SM_CHANNEL_{TRAIN,VALIDATION,TEST}``, the model to ``SM_MODEL_DIR``, checkpoints to ``/opt/ml/checkpoints``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments

SAGEMAKER_CHECKPOINTS = "/opt/ml/checkpoints"


class UsageError(Exception):
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
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Allow custom model code from the checkpoint's repository (off: only run code you have read)."})


@dataclass
class CountingArguments:
    objective: str = field(default="cross_entropy", metadata={
        "help": "cross_entropy, or count_aware: cross-entropy plus a penalty on the squared error of the expected "
                "(probability-weighted) count, which uses the order of the counts.",
        "choices": ["cross_entropy", "count_aware"]})
    count_loss_weight: float = field(default=0.5, metadata={"help": "Weight of the count penalty (count_aware)."})
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
    early_stopping_patience: int | None = field(default=None, metadata={
        "help": "Stop after this many evaluations without improvement of metric_for_best_model."})


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
    """(data, model, counting, output, training) from a JSON file or the command line."""
    argv = sys.argv[1:] if argv is None else argv
    parse = parser()
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(argv[0]) as f:
            return parse.parse_dict({**defaults(), **json.load(f)})
    return parse.parse_args_into_dataclasses(argv)


def known_options() -> set[str]:
    """Every option name train.run accepts; the SageMaker launcher rejects unknown hyperparameters with it."""
    return {action.dest for action in parser()._actions if action.option_strings}
