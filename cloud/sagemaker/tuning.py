"""Hyperparameter tuning jobs over train.run (the search space of ``train.tune``) and their reports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cloud.sagemaker.session import ConfigError, client, redacted, tags_of
from cloud.sagemaker.training import DataChannels, SageMakerArguments, TrainingJobArguments, describe, estimator, \
    hyperparameters
from train.logs import metric_definitions
from train.tune import SearchArguments


TUNED = ("learning_rate", "per_device_train_batch_size", "num_train_epochs", "weight_decay")


@dataclass
class TuningArguments:
    objective: str = field(default="rmse", metadata={
        "help": "Tuning objective: validation RMSE (minimised) or accuracy (maximised); also the metric each trial "
                "selects its best checkpoint by.", "choices": ["rmse", "accuracy"]})
    max_parallel_jobs: int = field(default=2, metadata={"help": "Trials running at once (n_trials in all)."})
    early_stopping: bool = field(default=True, metadata={
        "help": "Let SageMaker stop trials unlikely to beat the best one (early stopping 'Auto')."})


def tune(sm: SageMakerArguments, job: TrainingJobArguments, data: DataChannels, search: SearchArguments,
         tuning: TuningArguments, options: list[str] | dict[str, object], wait: bool = True, dry_run: bool = False):
    """Launch a hyperparameter tuning job over train.run (the search space of ``train.tune``); returns the tuner, or
    with ``dry_run`` the CreateHyperParameterTuningJob request it would send."""
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner, IntegerParameter
    from sagemaker.utils import name_from_base

    values = hyperparameters(options)
    if fixed := [name for name in TUNED if name in values]:
        raise ConfigError(f"--{fixed[0]} is tuned: set its range with the tune options instead")
    if values.setdefault("metric_for_best_model", tuning.objective).removeprefix("eval_") != tuning.objective:
        raise ConfigError(f"--metric_for_best_model must match --objective {tuning.objective}")
    if not (0 < search.learning_rate_min < search.learning_rate_max and 0 < search.epochs_min <= search.epochs_max
            and search.weight_decay_max >= 0 and search.batch_sizes and min(search.batch_sizes) > 0):
        raise ConfigError("empty search space: check the learning rate, epoch, batch size and weight decay ranges")
    if not 1 <= tuning.max_parallel_jobs <= search.n_trials:
        raise ConfigError("--max_parallel_jobs must be between 1 and --n_trials")
    name, requests = name_from_base(job.base_job_name, max_length=32), [] if dry_run else None  # 32: the API's limit
    model, inputs = estimator(sm, job, data, values, name, requests, tuning=True)
    tuner = HyperparameterTuner(
        model, objective_metric_name=f"eval_{tuning.objective}",
        objective_type="Minimize" if tuning.objective == "rmse" else "Maximize",
        hyperparameter_ranges={
            "learning_rate": ContinuousParameter(search.learning_rate_min, search.learning_rate_max,
                                                 scaling_type="Logarithmic"),
            "per_device_train_batch_size": CategoricalParameter([str(size) for size in search.batch_sizes]),
            "num_train_epochs": IntegerParameter(search.epochs_min, search.epochs_max),
            "weight_decay": ContinuousParameter(0.0, search.weight_decay_max),
        },
        metric_definitions=metric_definitions(), max_jobs=search.n_trials, max_parallel_jobs=tuning.max_parallel_jobs,
        early_stopping_type="Auto" if tuning.early_stopping else "Off", tags=tags_of(sm.tags) or None,
    )
    tuner.fit(inputs, job_name=name, wait=wait and not dry_run)
    return redacted(requests) if dry_run else tuner


def tuning_report(name: str, region: str | None = None) -> tuple[dict, dict | None]:
    """DescribeHyperParameterTuningJob, and DescribeTrainingJob of its best job (None until one has completed)."""
    sagemaker = client(region)
    tuning = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    best = tuning.get("BestTrainingJob")
    return tuning, sagemaker.describe_training_job(TrainingJobName=best["TrainingJobName"]) if best else None


def describe_tuning(tuning: dict, best_job: dict | None) -> str:
    """The tuning job's progress, and its best job: objective, tuned hyperparameters and final metrics."""
    counts = tuning.get("TrainingJobStatusCounters", {})
    failed = counts.get("NonRetryableError", 0) + counts.get("RetryableError", 0)
    lines = [f"tuning job {tuning['HyperParameterTuningJobName']}: {tuning['HyperParameterTuningJobStatus']} "
             f"({counts.get('Completed', 0)} completed, {counts.get('InProgress', 0)} in progress, {failed} failed, "
             f"{counts.get('Stopped', 0)} stopped)"]
    if tuning.get("FailureReason"):
        lines.append(f"failure reason: {tuning['FailureReason']}")
    best = tuning.get("BestTrainingJob")
    if not best:
        return "\n".join([*lines, "no completed training job yet"])
    objective = best["FinalHyperParameterTuningJobObjectiveMetric"]
    lines.append(f"best job: {best['TrainingJobName']} ({objective['MetricName']} = {objective['Value']:.6g})")
    lines.append("tuned: " + " ".join(f"{key}={_decoded(value)}"
                                      for key, value in sorted(best["TunedHyperParameters"].items())))
    if best_job and best_job.get("FinalMetricDataList"):
        lines.append(describe(best_job).splitlines()[-1])
    return "\n".join(lines)


def _decoded(value: str) -> str:
    """A hyperparameter as the container reads it: the SDK JSON-encodes strings ('"32"' is 32)."""
    try:
        return str(json.loads(value))
    except ValueError:
        return value
