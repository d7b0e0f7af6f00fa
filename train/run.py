"""Train a bin counter: ``python -m train.run --dataset DIR --model_name_or_path CKPT --output_dir OUT [...]``.

The same entry point runs on a laptop, under ``accelerate launch`` / ``torchrun`` on several GPUs (or CPU processes
over gloo), and as the entry point of SageMaker's Hugging Face training container (``python train/run.py --key value``).

- Models: any AutoModelForImageClassification checkpoint, re-headed to the dataset's count classes, or a config-only
  folder trained from scratch; optionally a frozen backbone; optionally pre-trained first on synthetic bins it
  generates (``--synthetic_pretrain N``, train/pretrain.py).
- Recipes: ``--config FILE`` (JSON or YAML, e.g. train/recipes/small-real-cpu.json); command-line options override it.
- Counting: class-weighted loss or weighted sampler, label smoothing, the count-aware and ordinal objectives
  (train/objectives.py); augmentation in DataLoader workers (train/transforms.py); metrics from train/metrics.
- At the end: each split is predicted and scored once; temperature scaling is fitted on validation and baked into the
  classifier (train/calibration.py); the inventory audit picks verify thresholds on validation and plays an audit
  on test (train/audit.py).
- Speed: bf16/fp16 on GPUs, ``--torch_compile``, channels_last for convnets, gradient accumulation.
- Robustness: resumes automatically from the last checkpoint in ``output_dir`` (``/opt/ml/checkpoints`` on SageMaker)
  and refuses checkpoints of another model; bad input ends with one ``error:`` line and exit code 2.
- Outputs in ``model_dir``: model.safetensors, config.json (count labels), preprocessor_config.json,
  all_results.json, results.md, confusion_matrix.png, training_curves.png, calibration.png, verify.json, audit.png,
  run_args.json and a model card.
- Logs: one ``[metrics] step=... name=value`` line per log event (train/logs.py), for SageMaker metric regexes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script, as SageMaker does: python train/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from datasets import Dataset
from transformers import EarlyStoppingCallback, Trainer, set_seed
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import get_last_checkpoint

from core import verify as rule
from core.cli import run_cli
from train import audit, calibration, card, data, plots, pretrain
from train import model as models
from train.args import CountingArguments, DataArguments, ModelArguments, OutputArguments, UsageError, parse_args
from train.compat import CountingTrainer  # the Trainer internals we rely on, version-checked
from train.logs import MetricLines, ProgressBars
from train.metrics import flatten, format_table
from train.metrics import load as load_metric
from train.objectives import CountingLoss, EpochWeightedSampler, class_weights, sample_weights
from train.profiling import StepProfiler
from train.transforms import Augmentation, BinTransform, EpochSync, EpochTagged, collate

logger = logging.getLogger("train.run")
BEST_MODEL_METRICS = {"accuracy", "rmse", "mae", "rmse_expected", "mae_expected", "off_by_one_accuracy", "f1_macro",
                      "loss"}


@dataclass
class Setup:
    """A ready trainer and what the end of a run needs."""

    trainer: CountingTrainer
    splits: data.Splits
    evaluation: dict[str, Dataset]
    checkpoint: str | None
    model_dir: Path
    push_to_hub: bool


def setup(data_args: DataArguments, model_args: ModelArguments, counting: CountingArguments, out: OutputArguments,
          training) -> Setup:
    """Check the arguments, then load the data, model and processor, and assemble the trainer."""
    push_to_hub = check_arguments(training)
    set_seed(training.seed)
    if counting.torch_threads:
        torch.set_num_threads(counting.torch_threads)
    logger.info("process %d of %d on %s", training.process_index, training.world_size, training.device)

    # Load the dataset; its ClassLabel is the label set
    splits = data.load(data_args, training.seed)
    logger.info("classes %s; %d train, %d validation, %s test images", splits.names, len(splits.train),
                len(splits.validation), len(splits.test) if splits.test is not None else "no")

    # Load the model and its image processor, and find the checkpoint to resume from
    model, processor, channels_last = load_model(model_args, counting, splits.names)
    checkpoint = find_checkpoint(training, out, model)

    # Prepare the transforms: augmentation in the workers, then the model's own processor
    augmentation = None
    if counting.augment:
        augmentation = Augmentation(counting.crop_scale, counting.rotation_degrees, counting.color_jitter)
    train_transform = BinTransform(processor, augmentation, training.seed)
    eval_transform = BinTransform(processor)
    evaluation = {"eval": splits.validation.with_transform(eval_transform)}
    if splits.test is not None:
        evaluation["test"] = splits.test.with_transform(eval_transform)

    # The objective
    loss, sampler = objective(counting, training, splits)

    # Initialize our trainer
    metric = load_metric()
    counts = np.asarray(splits.counts)

    def compute_metrics(prediction) -> dict[str, float]:
        return flatten(score(metric, prediction.predictions, prediction.label_ids, counts))

    trainer = CountingTrainer(
        model=model, args=training, train_dataset=EpochTagged(splits.train, train_transform),
        eval_dataset=evaluation["eval"], processing_class=processor,
        data_collator=lambda examples: collate(examples, channels_last), compute_metrics=compute_metrics,
        compute_loss_func=loss, callbacks=callbacks(counting, out, training, [train_transform, sampler]),
        train_sampler=sampler, epoch_of=lambda: train_transform.epoch, seed=training.seed,
    )
    if trainer.pop_callback(ProgressCallback):
        trainer.add_callback(ProgressBars)
    return Setup(trainer, splits, evaluation, checkpoint, Path(out.model_dir or training.output_dir), push_to_hub)


def check_arguments(training) -> bool:
    """Refuse what would leak or mislead; return whether to push (run() pushes, with our card and metrics)."""
    if training.hub_token:
        raise UsageError("pass the Hub token in the HF_TOKEN environment variable, never as an argument")
    metric_name = training.metric_for_best_model.removeprefix("eval_")
    if metric_name not in BEST_MODEL_METRICS:
        raise UsageError(f"--metric_for_best_model must be one of {', '.join(sorted(BEST_MODEL_METRICS))}")
    training.greater_is_better = not any(part in metric_name for part in ("loss", "rmse", "mae"))
    push_to_hub = training.push_to_hub
    training.push_to_hub = False
    return push_to_hub


def load_model(model_args: ModelArguments, counting: CountingArguments, names: list[str]):
    """The model (headed for ``names``) and its processor, sized as asked; and whether to train channels-last."""
    model, processor = models.load(model_args, names)
    if counting.calibrate:
        calibration.heads(model)  # a model whose head cannot be found is refused now, not after training
    if counting.image_size:
        resize_to(processor, counting.image_size)
    channels_last = counting.channels_last
    if channels_last is None:
        channels_last = torch.cuda.is_available() and models.is_convolutional(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, processor, channels_last


def find_checkpoint(training, out: OutputArguments, model) -> str | None:
    """The checkpoint to resume from: the one asked for, else the output folder's last (none with --overwrite)."""
    checkpoint = training.resume_from_checkpoint
    if Path(training.output_dir).is_dir() and checkpoint is None:
        if out.overwrite and training.process_index == 0:
            for old in Path(training.output_dir).glob("checkpoint-*"):
                shutil.rmtree(old)
        if not out.overwrite:
            checkpoint = get_last_checkpoint(training.output_dir)
    if checkpoint:
        models.check_resumable(checkpoint, model.config)
        logger.info("resuming from %s", checkpoint)
    return checkpoint


def objective(counting: CountingArguments, training, splits: data.Splits):
    """The loss (cross-entropy, count-aware or ordinal, class-weighted as asked) and the optional weighted sampler."""
    labels = splits.train["label"]
    count_weight = counting.count_loss_weight if counting.objective == "count_aware" else 0.0
    neighbour_mass = counting.neighbour_mass if counting.objective == "ordinal" else 0.0
    loss = CountingLoss(splits.counts, class_weights(labels, len(splits.names), counting.class_weighting),
                        training.label_smoothing_factor, count_weight, neighbour_mass)
    sampler = None
    if counting.weighted_sampler:
        sampler = EpochWeightedSampler(sample_weights(labels, len(splits.names)), training.seed)
    return loss, sampler


def callbacks(counting: CountingArguments, out: OutputArguments, training, epoch_aware: list) -> list:
    """Metric lines for SageMaker's regexes, the epoch for augmentation, early stopping and the profiler."""
    images_per_step = training.per_device_train_batch_size * training.gradient_accumulation_steps
    found = [MetricLines(images_per_step * max(1, training.world_size)), EpochSync(epoch_aware)]
    if counting.early_stopping_patience:
        found.append(EarlyStoppingCallback(counting.early_stopping_patience))
    if out.profile:
        found.append(StepProfiler(out.profile_steps, UsageError))
    return found


def resize_to(processor, side: int) -> None:
    """Make the processor's resize (and crop, if it has one) produce side x side inputs; saved with the model."""
    size = dict(processor.size or {})
    if "shortest_edge" in size:
        processor.size = {"shortest_edge": side}
        if getattr(processor, "crop_size", None):
            processor.crop_size = {"height": side, "width": side}
    else:
        processor.size = {"height": side, "width": side}


def run(data_args: DataArguments, model_args: ModelArguments, counting: CountingArguments, out: OutputArguments,
        training) -> dict:
    """Train; predict validation and test once with the best model; calibrate it, audit it, save every artifact,
    and push if asked."""
    if model_args.synthetic_pretrain:
        pretrain_on_synthetic(model_args, counting, out, training)
    run_setup = setup(data_args, model_args, counting, out, training)
    trainer, splits = run_setup.trainer, run_setup.splits
    metric, counts = load_metric(), np.asarray(splits.counts)

    # Train, then predict validation and test with the best model (scored below, once each)
    train_result = trainer.train(resume_from_checkpoint=run_setup.checkpoint)
    metrics = {k if k.startswith("train_") else f"train_{k}": v for k, v in train_result.metrics.items()}
    outputs = predict_splits(trainer, run_setup.evaluation, metrics)

    # Calibrate: fit T on validation and bake it into the classifier
    run_setup.model_dir.mkdir(parents=True, exist_ok=True)
    named = {"validation" if prefix == "eval" else prefix: value for prefix, value in outputs.items()}
    scaling = calibration.calibrate(trainer.model, named, run_setup.model_dir / "calibration.png") \
        if counting.calibrate else {"skipped": "turned off (--calibrate false)"}
    if "skipped" in scaling:
        logger.warning("no temperature scaling: %s", scaling["skipped"])
    temperature = scaling.get("temperature", 1.0)
    metrics |= calibration.flatten(scaling)

    # Score each split once, with the logits of the model as saved
    results = {}
    for prefix, (logits, label_ids) in outputs.items():
        results[prefix] = score(metric, logits / temperature, label_ids, counts)
        split_metrics = {f"{prefix}_{k}": v for k, v in flatten(results[prefix]).items()}
        trainer.log(split_metrics)
        metrics |= split_metrics
    shown = "test" if "test" in results else "eval"
    report_split = "test" if shown == "test" else "validation"

    # Audit: thresholds chosen on validation, the audit played on test
    audited = None
    if counting.audit:
        audited = run_audit(named, temperature, splits.names, counting, training.seed, run_setup.model_dir)
        metrics |= {f"audit_{k}": v for k, v in audited[1]["at_thresholds"].items() if v is not None}

    # Save the model, processor, metrics, plots and card (main process only)
    if trainer.is_world_process_zero():
        resolved = {"data": asdict(data_args), "model": asdict(model_args), "counting": asdict(counting),
                    "output": asdict(out), "training": training.to_dict()}
        extra = f"## Calibration\n\n{calibration.describe(scaling)}\n"
        if audited is not None:
            extra += f"## Inventory audit\n\n{audit.describe(audited[0], audited[1], audited[2])}\n"
        save_artifacts(trainer, run_setup.model_dir, splits, results[shown], report_split, metrics, resolved,
                       model_args, data_args, counting, extra)
        if audited is not None:
            rule.save(run_setup.model_dir, audited[0])
        print(f"\n{report_split} results\n\n{format_table(results[shown], splits.names)}", flush=True)
        if run_setup.push_to_hub:
            push(run_setup.model_dir, training.hub_model_id or run_setup.model_dir.name,
                 bool(training.hub_private_repo))
    return metrics


def pretrain_on_synthetic(model_args: ModelArguments, counting: CountingArguments, out: OutputArguments,
                          training) -> None:
    """Pre-train the same network on synthetic bins (train/pretrain.py); the run then starts from that model."""
    if model_args.synthetic_pretrain < 0:
        raise UsageError(f"--synthetic_pretrain must be a number of bins >= 0, got {model_args.synthetic_pretrain}")
    if training.world_size > 1:
        raise UsageError("--synthetic_pretrain runs in one process: pre-train first (train/recipes/"
                         "synthetic-pretrain-cpu.json), then pass that model as --model_name_or_path")
    work = pretrain.folder(training.output_dir)
    pretrain.claim(work, pretrain.settings(model_args, counting.image_size, training.seed), out.overwrite)
    model_dir = work / "model"
    if pretrain.is_finished(model_dir):
        logger.info("reusing the model pre-trained on synthetic bins in %s", model_dir)
    else:
        dataset = pretrain.prepare_dataset(work, model_args.synthetic_pretrain, training.seed)
        logger.info("pre-training on %d synthetic bins into %s", model_args.synthetic_pretrain, model_dir)
        run(*parse_args(pretrain.arguments(model_args, counting.image_size, dataset, model_dir, training.seed)))
    model_args.model_name_or_path = str(model_dir)


def predict_splits(trainer: Trainer, evaluation: dict, metrics: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Logits and labels of each split, predicted once (scored later, after calibration); adds the run's timings."""
    trainer.compute_metrics = None
    outputs = {}
    for prefix, dataset in evaluation.items():
        prediction = trainer.predict(dataset, metric_key_prefix=prefix)
        logits = prediction.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        outputs[prefix] = (np.asarray(logits, dtype=np.float64), np.asarray(prediction.label_ids))
        metrics |= prediction.metrics
    return outputs


def run_audit(named: dict, temperature: float, names: list[str], counting: CountingArguments, seed: int,
              model_dir: Path) -> tuple[dict, dict, str]:
    """(thresholds chosen on validation, the audit of test, or of validation without a test split, its split)."""
    logits, labels = named["validation"]
    thresholds = audit.choose_thresholds(calibration.softmax(logits / temperature), labels, names,
                                         counting.target_false_alarm)
    split = "test" if "test" in named else "validation"
    logits, labels = named[split]
    report = audit.audit(calibration.softmax(logits / temperature), labels, names, thresholds, 0.5, seed,
                         model_dir / "audit.png", f"Inventory audit, {split} split ({len(labels)} bins, half the "
                         f"records wrong)")
    return thresholds, report, split


def score(metric, logits: np.ndarray | tuple, label_ids: np.ndarray, counts: np.ndarray) -> dict:
    """Counting metrics of a batch of logits: the argmax count and the expected (probability-weighted) count."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    probabilities = calibration.softmax(logits)
    return metric.compute(predictions=counts[logits.argmax(-1)], references=counts[label_ids],
                          expected_counts=probabilities @ counts, labels=counts.tolist())


def save_artifacts(trainer: Trainer, model_dir: Path, splits: data.Splits, results: dict, split: str, metrics: dict,
                   resolved: dict, model_args: ModelArguments, data_args: DataArguments,
                   counting: CountingArguments, extra: str = "") -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(model_dir))
    (model_dir / "all_results.json").write_text(json.dumps(metrics, indent=1))
    (model_dir / "results.md").write_text(f"# Results on the {split} split\n\n{format_table(results, splits.names)}"
                                          f"\n{extra}")
    (model_dir / "run_args.json").write_text(json.dumps(resolved, indent=1, default=str))
    plots.plot_confusion_matrix(results["confusion_matrix"], splits.names, model_dir / "confusion_matrix.png",
                                title=f"Confusion matrix ({split} split)")
    plots.plot_training_curves(trainer.state.log_history, model_dir / "training_curves.png")
    training = trainer.args
    summary = (f"Objective `{counting.objective}`, class weighting `{counting.class_weighting}`, weighted sampler "
               f"{counting.weighted_sampler}, augmentation {counting.augment}, frozen backbone "
               f"{model_args.freeze_backbone}; {training.num_train_epochs:g} epochs, batch size "
               f"{training.per_device_train_batch_size} per device, learning rate {training.learning_rate:g} "
               f"({training.lr_scheduler_type}), weight decay {training.weight_decay:g}, seed {training.seed}.")
    if model_args.synthetic_pretrain:
        summary += f" Pre-trained first on {model_args.synthetic_pretrain} synthetic bins (train/pretrain.py)."
    (model_dir / "README.md").write_text(card.render(
        model_dir.name, model_args.model_name_or_path, data_args.dataset or "SageMaker channels", splits.names,
        results, split, {k: v for k, v in metrics.items() if k.startswith(("test_", "eval_")) and "count_" not in k},
        f"{summary}\n\n{extra}"))


def push(model_dir: Path, repo_id: str, private: bool) -> None:
    """Upload the model folder (not its checkpoints nor the synthetic pre-training's bins and model); the token comes
    from HF_TOKEN or the login cache."""
    from huggingface_hub import HfApi

    api = HfApi()
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(model_dir), repo_id=repo.repo_id, commit_message="Upload bin counter",
                      ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**", f"{pretrain.FOLDER}/**"])
    logger.info("pushed %s to the Hub as %s", model_dir, repo.repo_id)


def start(argv: list[str] | None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run(*parse_args(argv))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(start, argv)


if __name__ == "__main__":
    sys.exit(main())
