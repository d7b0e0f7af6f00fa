"""Build the counter: any AutoModelForImageClassification with a head over the dataset's count classes.

A checkpoint (Hub id or folder with weights) is fine-tuned — re-heading a 1000-class ImageNet head just works, and a
local counter over other counts keeps its head's rows for the counts both know — and a folder holding only
``config.json`` + ``preprocessor_config.json`` (``train/configs/tiny-*``) trains from scratch.
Weights load from safetensors only, and remote code runs only when explicitly allowed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, PretrainedConfig

from core.cli import UserError
from train.args import ModelArguments

logger = logging.getLogger("train.model")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# Configuration keys that do not change what a checkpoint's weights mean.
VOLATILE_KEYS = {"transformers_version", "architectures", "torch_dtype", "dtype", "_name_or_path", "problem_type",
                 "output_hidden_states", "use_cache"}


def from_scratch(path: str) -> bool:
    folder = Path(path)
    return folder.is_dir() and not any((folder / name).exists() for name in WEIGHT_FILES)


def load(args: ModelArguments, names: list[str]):
    """(model, image processor) with ``id2label`` / ``label2id`` taken from the dataset's class names."""
    source = args.model_name_or_path
    common = {"revision": args.model_revision, "trust_remote_code": args.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(source, num_labels=len(names), id2label=dict(enumerate(names)),
                                            label2id={name: i for i, name in enumerate(names)}, **common)
        if from_scratch(source):
            logger.warning("%s holds a configuration but no weights: training from scratch", source)
            model = AutoModelForImageClassification.from_config(config, trust_remote_code=args.trust_remote_code)
        else:
            model = AutoModelForImageClassification.from_pretrained(
                source, config=config, ignore_mismatched_sizes=True, use_safetensors=True, **common)
            keep_known_rows(model, Path(source), names)
        processor = AutoImageProcessor.from_pretrained(args.processor_name_or_path or source, **common)
    except ValueError as error:
        raise UserError(f"{source} cannot be used as an image classifier: {str(error).splitlines()[0]}") from None
    except OSError as error:
        raise UserError(f"cannot load {source}: {str(error).splitlines()[0]}") from None
    if args.freeze_backbone:
        freeze_backbone(model)
    return model, processor


def keep_known_rows(model: torch.nn.Module, folder: Path, names: list[str]) -> None:
    """Re-headed from a local counter over other counts (say 0-5 on synthetic bins, now 1-5): each count both know
    keeps the checkpoint's own row of the head, so only counts it never saw start from scratch."""
    weights, saved_config = folder / "model.safetensors", folder / "config.json"
    if not (weights.is_file() and saved_config.is_file()):
        return  # a Hub id or a sharded checkpoint: the fresh head stays
    id2label = AutoConfig.from_pretrained(folder).id2label
    old_names = [str(id2label[index]) for index in range(len(id2label))]
    shared = [(new, old_names.index(name)) for new, name in enumerate(names) if name in old_names]
    if len(old_names) == len(names) or not shared:  # same size: from_pretrained kept the head as it was
        return
    saved = load_file(str(weights))
    for key, tensor in model.state_dict().items():
        old = saved.get(key)
        if key.startswith("classifier") and old is not None and old.shape[:1] == (len(old_names),) \
                and tensor.shape[:1] == (len(names),):
            for new, index in shared:
                tensor[new] = old[index]
    logger.info("kept the head's rows of counts %s from %s", ", ".join(names[new] for new, _ in shared), folder)


def freeze_backbone(model: torch.nn.Module) -> None:
    """Train only the classification head (``classifier.*`` in every transformers image classifier)."""
    head = [name for name, _ in model.named_parameters() if name.startswith("classifier")]
    if not head:
        raise UserError(f"no classifier head found in {type(model).__name__}; cannot freeze the backbone")
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("classifier")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("frozen backbone: training %d of %d parameters", trainable, sum(p.numel() for p in model.parameters()))


def is_convolutional(model: torch.nn.Module) -> bool:
    """Most parameters in Conv2d layers (ResNet, ConvNeXt, ...), unlike ViT, whose one convolution embeds patches."""
    conv = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d) for p in m.parameters())
    return conv > 0.5 * sum(p.numel() for p in model.parameters())


def check_resumable(checkpoint: str, config: PretrainedConfig) -> None:
    """Refuse to resume from a checkpoint of a different model or label set (it would silently mix runs)."""
    saved = AutoConfig.from_pretrained(checkpoint).to_dict()
    current = config.to_dict()
    differs = sorted(k for k in (set(saved) | set(current)) - VOLATILE_KEYS if saved.get(k) != current.get(k))
    if differs:
        raise UserError(f"{checkpoint} is a checkpoint of another model (differs in {', '.join(differs[:5])}); "
                         f"use another --output_dir, or --overwrite to start over")
