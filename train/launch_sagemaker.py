"""Run train.run, a hyperparameter search or the full dataset build on SageMaker (SDK v2, Hugging Face containers).

    python -m train.launch_sagemaker train --dataset_s3 s3://BUCKET/bincount/datasets/abid \\
        -- --model_name_or_path google/vit-base-patch16-224-in21k --num_train_epochs 5
    python -m train.launch_sagemaker train --instance_type ml.g5.12xlarge --spot --dataset_s3 ... -- ...
    python -m train.launch_sagemaker tune --objective rmse --n_trials 16 --max_parallel_jobs 4 --dataset_s3 ... -- ...
    python -m train.launch_sagemaker tune-report NAME
    python -m train.launch_sagemaker process --instance_count 4 -- --unsigned
    python -m train.launch_sagemaker status NAME

Launcher options come before ``--``; what follows is for the program the job runs, checked against that program's own
options before any API call: train.run's (passed as SageMaker hyperparameters, ``--key value``) or data.build's. Role,
region and bucket come from --role/$SAGEMAKER_ROLE, --region/$AWS_REGION and --bucket/$SAGEMAKER_BUCKET.

- Training runs our own ``train/run.py`` in the Hugging Face training container (``python train/run.py --key value``,
  under torchrun on GPU instances) from a bundle of the ``train`` package with a requirements.txt of our pins.
  Container versions are set in one place (cloud/sagemaker/containers.py); ``--image_uri`` overrides them.
- Data: channels train/validation/test from a data.build output in S3 (or a local one, uploaded first), or a Hub
  dataset id passed as the ``--dataset`` hyperparameter.
- Spot jobs resume from ``/opt/ml/checkpoints`` (train.run's output_dir on SageMaker), which SageMaker syncs with S3.
- The dataset build is a Processing job: N instances each run ``python -m data.build --shards_only`` on their share of
  the bucket, then one instance assembles the shards into the dataset (and can push it to the Hub).
- ``--dry_run`` prints the Create* request(s) as JSON, secrets masked, and neither uploads nor creates anything.

Each command is a function for notebooks: ``train``, ``tune``, ``tuning_report``, ``process``, ``job_status``. They
live in ``cloud/sagemaker/`` (training.py, tuning.py, processing.py; containers and pins in containers.py, checks in
session.py); this module is their command line.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from botocore.exceptions import BotoCoreError, ClientError

from cloud.sagemaker.containers import PROCESSING_CODE, PROCESSING_REQUIREMENTS, TRAINING_CODE, TRAINING_REQUIREMENTS
from cloud.sagemaker.processing import ProcessingArguments, process
from cloud.sagemaker.training import (
    DataChannels,
    JobArguments,
    LaunchArguments,
    SageMakerArguments,
    TrainingJobArguments,
    describe,
    estimator,
    hyperparameters,
    job_status,
    train,
)
from cloud.sagemaker.tuning import TuningArguments, describe_tuning, tune, tuning_report
from core.cli import Subcommand, Subcommands, entry_point
from train.tune import SearchArguments

__all__ = ["PROCESSING_CODE", "PROCESSING_REQUIREMENTS", "TRAINING_CODE", "TRAINING_REQUIREMENTS", "DataChannels",
           "JobArguments", "LaunchArguments", "ProcessingArguments", "SageMakerArguments", "SearchArguments",
           "TrainingJobArguments", "TuningArguments", "describe", "describe_tuning", "estimator", "hyperparameters",
           "job_status", "main", "process", "train", "tune", "tuning_report"]

PROGRAM = "python -m train.launch_sagemaker"
COMMANDS = Subcommands(PROGRAM, {
    "train": Subcommand((SageMakerArguments, TrainingJobArguments, DataChannels, LaunchArguments),
                        "Run train.run as a training job (its options after --)."),
    "tune": Subcommand((SageMakerArguments, TrainingJobArguments, DataChannels, SearchArguments, TuningArguments,
                        LaunchArguments), "Run a hyperparameter tuning job over train.run (its options after --)."),
    "tune-report": Subcommand((JobArguments,), "Show a tuning job's progress and its best trial."),
    "process": Subcommand((SageMakerArguments, ProcessingArguments, LaunchArguments),
                          "Build the dataset in Processing jobs (data.build options after --)."),
    "status": Subcommand((JobArguments,), "Show a training or processing job's state and final metrics."),
}, description=__doc__, passthrough=("train", "tune", "process"))
NAMED = ("status", "tune-report")  # these take the job name as their first word


def run(command: str, groups: tuple, options: list[str]) -> int:
    """Run one parsed command and print its result; returns the exit code (1 for a failed job)."""
    if command == "status":
        job = job_status(groups[0].name, groups[0].region)
        print(describe(job))
        return int((job.get("TrainingJobStatus") or job.get("ProcessingJobStatus")) == "Failed")
    if command == "tune-report":
        print(describe_tuning(*tuning_report(groups[0].name, groups[0].region)))
        return 0
    *arguments, launch = groups
    region = arguments[0].region
    result = {"train": train, "tune": tune, "process": process}[command](*arguments, options, launch.wait,
                                                                        launch.dry_run)
    if launch.dry_run:
        print(json.dumps(result, indent=1, default=str))
    elif command == "train":
        name = result.latest_training_job.name
        print(describe(result.latest_training_job.describe()) if launch.wait else
              f"training job {name} created; follow it with: python -m train.launch_sagemaker status {name}")
    elif command == "tune":
        name = result.latest_tuning_job.name
        print(describe_tuning(*tuning_report(name, region)) if launch.wait else
              f"tuning job {name} created; follow it with: python -m train.launch_sagemaker tune-report {name}")
    else:
        print("\n".join(describe(job_status(name, region)) if launch.wait else f"processing job {name} created"
                        for name in result))
    return 0


@entry_point(user_errors=(ValueError, OSError, BotoCoreError, ClientError))
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)  # it logs to stdout, where --dry_run prints JSON
    logging.getLogger("sagemaker.telemetry").setLevel(logging.CRITICAL)  # the SDK's usage pings (see the README)
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")  # v2 is pinned on purpose (sagemaker.huggingface)
    from sagemaker.exceptions import UnexpectedStatusException

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] in NAMED and not argv[1].startswith("-"):
        argv = [argv[0], "--name", *argv[1:]]
    command, groups, options = COMMANDS.parse(argv)
    try:
        return run(command, groups, options)
    except UnexpectedStatusException as error:  # the job ran and failed: not the user's input
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
