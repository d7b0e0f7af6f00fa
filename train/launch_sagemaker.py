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
  Container versions are set in one place (``TRAINING_CONTAINER``, ``PROCESSING_CONTAINER``); ``--image_uri``
  overrides them.
- Data: channels train/validation/test from a data.build output in S3 (or a local one, uploaded first), or a Hub
  dataset id passed as the ``--dataset`` hyperparameter.
- Spot jobs resume from ``/opt/ml/checkpoints`` (train.run's output_dir on SageMaker), which SageMaker syncs with S3.
- The dataset build is a Processing job: N instances each run ``python -m data.build --shards_only`` on their share of
  the bucket, then one instance assembles the shards into the dataset (and can push it to the Hub).
- ``--dry_run`` prints the Create* request(s) as JSON, secrets masked, and neither uploads nor creates anything.

Each command is a function for notebooks: ``train``, ``tune``, ``tuning_report``, ``process``, ``job_status``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from transformers import HfArgumentParser

from cloud.s3 import parse_s3_uri
from cloud.session import (
    ConfigError,
    check_bucket,
    check_instance_type,
    check_region,
    check_role,
    check_s3_uri,
    pack_bundle,
    redacted,
    session,
)
from train.args import SAGEMAKER_CHECKPOINTS, known_options
from train.logs import metric_definitions
from train.tune import SearchArguments

logger = logging.getLogger("train.launch_sagemaker")

# The newest containers SageMaker SDK 2.257.7 knows: move them forward here (or pass --image_uri).
TRAINING_CONTAINER = {"framework": "huggingface", "version": "4.56.2", "base_framework_version": "pytorch2.8.0",
                      "py_version": "py312"}
PROCESSING_CONTAINER = {"framework": "pytorch", "version": "2.8.0", "py_version": "py312"}  # CPU builds too
# What train.run and data.build need, pinned like ours; never torch: each container keeps its own (CUDA) build.
TRAINING_REQUIREMENTS = ("transformers", "datasets", "evaluate", "accelerate", "huggingface-hub", "safetensors",
                         "pillow", "numpy", "matplotlib", "tqdm")
PROCESSING_REQUIREMENTS = ("transformers", "datasets", "huggingface-hub", "pillow", "numpy", "matplotlib", "tqdm",
                           "boto3", "botocore", "urllib3")
# The project code each job runs: the label rule and CLI convention travel with train/ and data/ (see core/).
TRAINING_CODE = ("train", "core/__init__.py", "core/labels.py", "core/cli.py")
PROCESSING_CODE = ("data", "cloud/__init__.py", "cloud/s3.py", "core")
SPLITS = ("train", "validation", "test")
TUNED = ("learning_rate", "per_device_train_batch_size", "num_train_epochs", "weight_decay")
RESERVED_HYPERPARAMETERS = {
    "output_dir": f"the launcher sets it to {SAGEMAKER_CHECKPOINTS}, which SageMaker syncs with --checkpoint_s3_uri",
    "model_dir": "SageMaker sets it (SM_MODEL_DIR, uploaded as model.tar.gz)",
    "hub_token": "pass the token as HF_TOKEN in the environment: hyperparameters are shown in the console",
}
RESERVED_BUILD_OPTIONS = {"output", "shards_only", "assemble_from", "num_hosts", "host_index", "work_dir",
                          "push_to_hub"}
# The Processing container contract: inputs are downloaded before the entry point starts, the output folders are
# uploaded to S3 when it ends. Our entry point unpacks the bundle, installs its pins and runs data.build as at home.
CODE_DIR = "/opt/ml/processing/input/code"
SHARDS_DIR = "/opt/ml/processing/output/shards"
DATASET_DIR = "/opt/ml/processing/output/dataset"
BOOTSTRAP = ["bash", "-c", f"cd {CODE_DIR} && tar -xzf sourcedir.tar.gz && python -m pip install -q -r "
                           f'requirements.txt && exec python -m data.build "$@"', "data.build"]


@dataclass
class SageMakerArguments:
    role: str | None = field(default=None, metadata={
        "help": "SageMaker execution role ARN (default: $SAGEMAKER_ROLE)."})
    region: str | None = field(default=None, metadata={
        "help": "AWS region (default: $AWS_REGION, else the AWS configuration)."})
    bucket: str | None = field(default=None, metadata={
        "help": "S3 bucket for code, datasets, checkpoints and models (default: $SAGEMAKER_BUCKET)."})
    prefix: str = field(default="bincount", metadata={"help": "Key prefix of everything the launcher writes to S3."})
    tags: list[str] = field(default_factory=list, metadata={
        "help": "Job tags as key=value (e.g. project=bins team=ml), for cost allocation."})


@dataclass
class LaunchArguments:
    wait: bool = field(default=True, metadata={
        "help": "Wait until the job ends (training streams its logs); --no-wait returns once it is created."})
    dry_run: bool = field(default=False, metadata={
        "help": "Print the Create* request(s) as JSON and exit: nothing is uploaded or created."})


@dataclass
class TrainingJobArguments:
    instance_type: str = field(default="ml.g5.xlarge", metadata={
        "help": "GPU instance: ml.g5.xlarge (1 A10G) is the cheap default; ml.g5.12xlarge has 4, ml.p4d.24xlarge 8 "
                "A100s."})
    instance_count: int = field(default=1, metadata={"help": "Instances (several need --distributed)."})
    distributed: bool = field(default=True, metadata={
        "help": "Run train.run under torchrun, one process per GPU on every instance (torch_distributed); "
                "--no_distributed runs one process per instance."})
    spot: bool = field(default=False, metadata={
        "help": "Managed spot training: spare capacity, up to 90%% cheaper; an interrupted job resumes from its "
                "last checkpoint."})
    max_run: int = field(default=24 * 3600, metadata={"help": "Seconds of training before SageMaker stops the job."})
    max_wait: int | None = field(default=None, metadata={
        "help": "Spot only: seconds of training plus waiting for capacity (default: 2 x max_run)."})
    checkpoint_s3_uri: str | None = field(default=None, metadata={
        "help": f"S3 prefix SageMaker syncs with {SAGEMAKER_CHECKPOINTS}, where train.run saves and resumes "
                f"(default with --spot: s3://BUCKET/PREFIX/checkpoints/JOB)."})
    output_path: str | None = field(default=None, metadata={
        "help": "S3 prefix for JOB/output/model.tar.gz (default: s3://BUCKET/PREFIX/models)."})
    volume_size: int = field(default=100, metadata={"help": "GB of disk per instance (dataset, checkpoints)."})
    image_uri: str | None = field(default=None, metadata={
        "help": f"Training image (default: the Hugging Face training container, transformers "
                f"{TRAINING_CONTAINER['version']}, {TRAINING_CONTAINER['base_framework_version']})."})
    base_job_name: str = field(default="bincount", metadata={"help": "Job names are this plus a timestamp."})


@dataclass
class DataChannels:
    dataset_s3: str | None = field(default=None, metadata={
        "help": "A data.build output in S3: its train/, validation/ and test/ become the channels."})
    dataset_dir: str | None = field(default=None, metadata={
        "help": "A local data.build output, uploaded to s3://BUCKET/PREFIX/datasets/<folder name>/ first."})
    train: str | None = field(default=None, metadata={"help": "S3 prefix of the train channel (a saved split)."})
    validation: str | None = field(default=None, metadata={"help": "S3 prefix of the validation channel."})
    test: str | None = field(default=None, metadata={"help": "S3 prefix of the test channel."})


@dataclass
class TuningArguments:
    objective: str = field(default="rmse", metadata={
        "help": "Tuning objective: validation RMSE (minimised) or accuracy (maximised); also the metric each trial "
                "selects its best checkpoint by.", "choices": ["rmse", "accuracy"]})
    max_parallel_jobs: int = field(default=2, metadata={"help": "Trials running at once (n_trials in all)."})
    early_stopping: bool = field(default=True, metadata={
        "help": "Let SageMaker stop trials unlikely to beat the best one (early stopping 'Auto')."})


@dataclass
class ProcessingArguments:
    stage: str = field(default="all", metadata={
        "help": "shards: N instances write parquet shards; assemble: one instance merges them into the dataset; "
                "all: both, one after the other.", "choices": ["all", "shards", "assemble"]})
    instance_type: str = field(default="ml.c5.4xlarge", metadata={
        "help": "Decoding and resizing JPEGs is CPU work: 16 vCPUs each."})
    instance_count: int = field(default=4, metadata={"help": "Instances of the shards stage; each takes every N-th "
                                                             "chunk of the listing."})
    dataset_s3: str | None = field(default=None, metadata={
        "help": "Where the assembled dataset goes, for train --dataset_s3 (default: s3://BUCKET/PREFIX/datasets/JOB)."})
    shards_s3: str | None = field(default=None, metadata={"help": "Where the shards go (default: DATASET_S3.shards)."})
    push_to_hub: str | None = field(default=None, metadata={
        "help": "Publish the assembled dataset to this Hub dataset id (token: HF_TOKEN)."})
    max_run: int = field(default=24 * 3600, metadata={"help": "Seconds before SageMaker stops a stage."})
    volume_size: int = field(default=100, metadata={"help": "GB of disk per instance (shards, dataset)."})
    image_uri: str | None = field(default=None, metadata={
        "help": f"Processing image (default: the PyTorch {PROCESSING_CONTAINER['version']} container)."})
    base_job_name: str = field(default="bincount-build", metadata={"help": "Job names are this plus a timestamp."})


@dataclass
class JobArguments:
    name: str = field(metadata={"help": "Job name (a tuning job's for tune-report)."})
    region: str | None = field(default=None, metadata={
        "help": "AWS region (default: $AWS_REGION, else the AWS configuration)."})


def image_uri(container: dict[str, str], region: str, instance_type: str, override: str | None = None) -> str:
    """The image a job runs: ``override``, else the SDK's image of ``container`` for this region and instance type."""
    if override:
        return override
    from sagemaker import image_uris

    try:
        return image_uris.retrieve(region=region, instance_type=instance_type, image_scope="training", **container)
    except ValueError as error:
        raise ConfigError(f"no {container['framework']} {container['version']} container for {instance_type} in "
                          f"{region}: {str(error).splitlines()[0]} (or pass --image_uri)") from None


def program_options(tokens: list[str], known: set[str], program: str) -> dict[str, list[str]]:
    """``--key value`` strings by option name (``-`` read as ``_``), each name checked against the program's own."""
    parsed: dict[str, list[str]] = {}
    name = None
    for token in tokens:
        if token.startswith("--"):
            name, has_value, value = token[2:].partition("=")
            name = name.replace("-", "_")
            if name not in known:
                hint = f" (pass --{name[3:]} False)" if name.startswith("no_") and name[3:] in known else ""
                raise ConfigError(f"unknown {program} option --{name}{hint}")
            parsed[name] = [value] if has_value else []
        elif name is None:
            raise ConfigError(f"expected --key value options for {program}, got {token!r}")
        else:
            parsed[name].append(token)
    return parsed


def hyperparameters(options: list[str] | dict[str, object]) -> dict[str, str]:
    """train.run options as SageMaker hyperparameters: one string per name, a bare ``--flag`` meaning True."""
    if isinstance(options, dict):
        options = [token for name, value in options.items() for token in (f"--{name}", str(value))]
    values = {}
    for name, args in program_options(options, known_options() - {"help"}, "train.run").items():
        if name in RESERVED_HYPERPARAMETERS:
            raise ConfigError(f"--{name}: {RESERVED_HYPERPARAMETERS[name]}")
        if len(args) > 1:
            raise ConfigError(f"--{name}: a hyperparameter takes one value, got {' '.join(args)}")
        values[name] = args[0] if args else "True"
    return values


def channels(data: DataChannels, bucket: str, prefix: str) -> tuple[dict[str, str], tuple[Path, str] | None]:
    """The S3 channels of the job, and (local folder, S3 prefix) of a dataset to upload first (``--dataset_dir``)."""
    explicit = {split: getattr(data, split) for split in SPLITS if getattr(data, split)}
    if sum(map(bool, (explicit, data.dataset_s3, data.dataset_dir))) > 1:
        raise ConfigError("give one dataset: --dataset_s3, --dataset_dir, or --train [--validation --test]")
    if data.dataset_dir:
        local = Path(data.dataset_dir)
        splits = [split for split in SPLITS if (local / split / "state.json").is_file()]
        if "train" not in splits:
            raise ConfigError(f"{local} is not a dataset written by data.build (no saved train/ split)")
        base = f"s3://{bucket}/{prefix}/datasets/{local.resolve().name}"
        return {split: f"{base}/{split}/" for split in splits}, (local, base)
    if data.dataset_s3:
        base = check_s3_uri(data.dataset_s3, "--dataset_s3").rstrip("/")
        return {split: f"{base}/{split}/" for split in SPLITS}, None
    if explicit and "train" not in explicit:
        raise ConfigError("--validation and --test need --train")
    return {split: check_s3_uri(uri, f"--{split}") for split, uri in explicit.items()}, None


def spot_settings(job: TrainingJobArguments, checkpoints: str | None) -> tuple[int | None, str | None]:
    """(max_wait, checkpoint S3 URI): a spot job waits for capacity up to max_wait, and resumes from checkpoints (by
    default ``checkpoints``) after an interruption."""
    if job.max_wait is not None and not job.spot:
        raise ConfigError("--max_wait is for --spot jobs (training time plus time waiting for spare capacity)")
    max_wait = (job.max_wait or 2 * job.max_run) if job.spot else None
    if max_wait is not None and max_wait < job.max_run:
        raise ConfigError(f"--max_wait ({max_wait} s) must be at least --max_run ({job.max_run} s)")
    uri = job.checkpoint_s3_uri or (checkpoints if job.spot else None)
    return max_wait, uri and check_s3_uri(uri, "--checkpoint_s3_uri")


def hub_token() -> dict[str, str]:
    """The environment of a job that pushes to the Hub: our HF_TOKEN, never a hyperparameter (those are shown)."""
    if not os.environ.get("HF_TOKEN"):
        raise ConfigError("--push_to_hub needs HF_TOKEN in the environment (it is passed to the job, never printed)")
    return {"HF_TOKEN": os.environ["HF_TOKEN"]}


def tags_of(tags: list[str]) -> list[dict[str, str]]:
    pairs = [tag.partition("=") for tag in tags]
    if any(not key or not sep for key, sep, _ in pairs):
        raise ConfigError(f"tags are key=value, got {' '.join(tags)}")
    return [{"Key": key, "Value": value} for key, _, value in pairs]


def estimator(sm: SageMakerArguments, job: TrainingJobArguments, data: DataChannels, values: dict[str, str],
              name: str, requests: list[dict] | None = None, tuning: bool = False):
    """A ``HuggingFace`` estimator running train.run, and its channels (None for a Hub dataset).

    Every setting is checked first, then the code bundle (and a local dataset) is uploaded, except in a dry run: given
    a ``requests`` list (see ``session``)."""
    from sagemaker.huggingface import HuggingFace

    role, region, bucket = check_role(sm.role), check_region(sm.region), check_bucket(sm.bucket)
    instance_type, prefix = check_instance_type(job.instance_type), sm.prefix.strip("/")
    if job.instance_count < 1:
        raise ConfigError("--instance_count must be at least 1")
    gpu = instance_type.split(".")[1][0] in "gp"  # ml.g*, ml.p*
    distribution = {"torch_distributed": {"enabled": True}} if job.distributed and gpu else None
    if job.instance_count > 1 and not distribution:
        raise ConfigError("several instances need --distributed on GPU instances (ml.g*, ml.p*); otherwise each "
                          "would train its own copy")
    if tuning and job.checkpoint_s3_uri:
        raise ConfigError("--checkpoint_s3_uri would be shared by every trial of a tuning job")
    max_wait, checkpoints = spot_settings(job, None if tuning else f"s3://{bucket}/{prefix}/checkpoints/{name}")
    output_path = check_s3_uri(job.output_path or f"s3://{bucket}/{prefix}/models", "--output_path")
    inputs, upload = channels(data, bucket, prefix)
    if inputs and "dataset" in values:
        raise ConfigError("give the data as channels (--dataset_s3, --dataset_dir, --train) or as a Hub dataset id "
                          "after -- (--dataset ORG/NAME), not both")
    if not inputs and "dataset" not in values:
        raise ConfigError("no data: pass --dataset_s3, --dataset_dir or --train, or a Hub dataset id after -- "
                          "(--dataset ORG/NAME)")
    push = values.get("push_to_hub", "false").lower() in ("yes", "true", "t", "y", "1")  # as train.run reads it
    if push and "hub_model_id" not in values:
        raise ConfigError("--push_to_hub needs --hub_model_id (the Hub repository to create or update)")
    environment = hub_token() if push else {}
    image = image_uri(TRAINING_CONTAINER, region, instance_type, job.image_uri)
    tags = tags_of(sm.tags)

    sagemaker_session = session(region, bucket, requests)
    code = f"s3://{bucket}/{prefix}/code/{name}/sourcedir.tar.gz"
    if requests is None:
        upload_code(sagemaker_session, code, TRAINING_CODE, TRAINING_REQUIREMENTS)
        if upload is not None:
            sagemaker_session.upload_data(str(upload[0]), *parse_s3_uri(upload[1]))
            logger.info("uploaded %s to %s/ (next time, pass --dataset_s3 %s)", *upload, upload[1])
    return HuggingFace(
        entry_point="train/run.py", source_dir=code, image_uri=image,
        transformers_version=TRAINING_CONTAINER["version"],
        pytorch_version=TRAINING_CONTAINER["base_framework_version"].removeprefix("pytorch"),
        py_version=TRAINING_CONTAINER["py_version"], role=role, instance_type=instance_type,
        instance_count=job.instance_count, distribution=distribution, volume_size=job.volume_size,
        hyperparameters={**values, "output_dir": SAGEMAKER_CHECKPOINTS}, metric_definitions=metric_definitions(),
        use_spot_instances=job.spot, max_run=job.max_run, max_wait=max_wait, checkpoint_s3_uri=checkpoints,
        checkpoint_local_path=SAGEMAKER_CHECKPOINTS if checkpoints else None, output_path=output_path,
        environment=environment or None, tags=tags or None, base_job_name=job.base_job_name,
        sagemaker_session=sagemaker_session, debugger_hook_config=False, disable_profiler=True,
    ), inputs or None  # a Hub dataset: no channels at all (an empty list is an invalid request)


def upload_code(sagemaker_session, uri: str, packages: tuple[str, ...], requirements: tuple[str, ...]) -> None:
    """Pack the project's ``packages`` with their pinned requirements.txt and upload the tarball to ``uri``."""
    bucket, key = parse_s3_uri(uri)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = pack_bundle(Path(tmp) / "sourcedir.tar.gz", packages, requirements)
        sagemaker_session.upload_data(str(tarball), bucket, key.rsplit("/", 1)[0])
    logger.info("uploaded the %s code to %s", ", ".join(packages), uri)


def train(sm: SageMakerArguments, job: TrainingJobArguments, data: DataChannels,
          options: list[str] | dict[str, object], wait: bool = True, dry_run: bool = False):
    """Launch train.run as a training job; returns the estimator (``estimator.latest_training_job.name``), or with
    ``dry_run`` the CreateTrainingJob request it would send."""
    from sagemaker.utils import name_from_base

    name, requests = name_from_base(job.base_job_name), [] if dry_run else None
    model, inputs = estimator(sm, job, data, hyperparameters(options), name, requests)
    model.fit(inputs, wait=wait and not dry_run, job_name=name)
    return redacted(requests) if dry_run else model


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


def build_options() -> set[str]:
    from data.build import OutputArguments, SelectionArguments, SourceArguments

    parser = HfArgumentParser((SourceArguments, SelectionArguments, OutputArguments))
    return {action.dest for action in parser._actions if action.option_strings} - {"help"}


def process(sm: SageMakerArguments, build: ProcessingArguments, options: list[str], wait: bool = True,
            dry_run: bool = False) -> list[str] | list[dict]:
    """Build the dataset with data.build in Processing jobs: shards on ``instance_count`` instances, then the assembly
    on one. Returns the job names, or with ``dry_run`` the CreateProcessingJob requests it would send."""
    from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
    from sagemaker.utils import name_from_base

    role, region, bucket = check_role(sm.role), check_region(sm.region), check_bucket(sm.bucket)
    instance_type, prefix = check_instance_type(build.instance_type), sm.prefix.strip("/")
    if build.instance_count < 1:
        raise ConfigError("--instance_count must be at least 1")
    if reserved := sorted(RESERVED_BUILD_OPTIONS & set(program_options(options, build_options(), "data.build"))):
        raise ConfigError(f"--{reserved[0]} is set by the launcher (see --dataset_s3, --shards_s3, --push_to_hub)")
    if build.stage == "all" and not wait and not dry_run:
        raise ConfigError("--stage all assembles once the shards job ends, so it waits: run --stage shards "
                          "--no-wait now and --stage assemble with the same --dataset_s3 later")
    if build.stage == "assemble" and not (build.dataset_s3 or build.shards_s3):
        raise ConfigError("--stage assemble needs the --dataset_s3 (or --shards_s3) of the shards stage")
    name = name_from_base(build.base_job_name, max_length=54)  # room for -shards / -assemble
    dataset = check_s3_uri(build.dataset_s3, "--dataset_s3").rstrip("/") if build.dataset_s3 else \
        f"s3://{bucket}/{prefix}/datasets/{name}"
    shards = check_s3_uri(build.shards_s3, "--shards_s3").rstrip("/") if build.shards_s3 else f"{dataset}.shards"
    environment = hub_token() if build.push_to_hub else {}
    image = image_uri(PROCESSING_CONTAINER, region, instance_type, build.image_uri)
    tags = tags_of(sm.tags)

    requests = [] if dry_run else None
    sagemaker_session = session(region, bucket, requests)
    code = f"s3://{bucket}/{prefix}/code/{name}/sourcedir.tar.gz"
    if not dry_run:
        upload_code(sagemaker_session, code, PROCESSING_CODE, PROCESSING_REQUIREMENTS)
    stages = []
    if build.stage in ("all", "shards"):
        stages.append(("shards", build.instance_count, [*options, "--output", SHARDS_DIR, "--shards_only"],
                       SHARDS_DIR, shards, {}))
    if build.stage in ("all", "assemble"):
        push = ["--push_to_hub", build.push_to_hub] if build.push_to_hub else []
        stages.append(("assemble", 1, [*options, "--assemble_from", shards, "--output", DATASET_DIR, *push],
                       DATASET_DIR, dataset, environment))
    names = []
    for stage, count, arguments, local, destination, env in stages:
        processor = Processor(role=role, image_uri=image, instance_count=count, instance_type=instance_type,
                              entrypoint=BOOTSTRAP, volume_size_in_gb=build.volume_size,
                              max_runtime_in_seconds=build.max_run, env=env or None, tags=tags or None,
                              sagemaker_session=sagemaker_session)
        names.append(f"{name}-{stage}")
        logger.info("%s stage: job %s on %d x %s, writing %s", stage, names[-1], count, instance_type, destination)
        # logs=False: the SDK would interleave every instance's progress bars; the logs are in CloudWatch.
        processor.run(inputs=[ProcessingInput(code, CODE_DIR, input_name="code")],
                      outputs=[ProcessingOutput(local, destination, output_name=Path(local).name)], arguments=arguments,
                      wait=wait and not dry_run, logs=False, job_name=names[-1])
    return redacted(requests) if dry_run else names


def _client(region: str | None):
    import boto3

    return boto3.Session(region_name=check_region(region)).client("sagemaker")


def job_status(name: str, region: str | None = None) -> dict:
    """DescribeTrainingJob of ``name``, or DescribeProcessingJob when no training job has that name."""
    client = _client(region)
    for call, key in ((client.describe_training_job, "TrainingJobName"),
                      (client.describe_processing_job, "ProcessingJobName")):
        try:
            return call(**{key: name})
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
                raise
    raise ConfigError(f"no training or processing job named {name!r}")


def describe(job: dict) -> str:
    """A job description in a few lines: status, failure reason, billed time, model and final metrics."""
    kind = "training" if "TrainingJobName" in job else "processing"
    status = job.get("TrainingJobStatus") or job.get("ProcessingJobStatus")
    secondary = job.get("SecondaryStatus")
    lines = [f"{kind} job {job.get('TrainingJobName') or job.get('ProcessingJobName')}: {status}" +
             (f" ({secondary})" if secondary and secondary != status else "")]
    if job.get("FailureReason"):
        lines.append(f"failure reason: {job['FailureReason']}")
    billable, seconds = job.get("BillableTimeInSeconds"), job.get("TrainingTimeInSeconds")
    if billable and seconds:
        saved = f" (spot saved {1 - billable / seconds:.0%})" if job.get("EnableManagedSpotTraining") else ""
        lines.append(f"billable time: {billable} s of {seconds} s{saved}")
    if status == "Completed" and (model := job.get("ModelArtifacts", {}).get("S3ModelArtifacts")):
        lines.append(f"model: {model}")
    if metrics := job.get("FinalMetricDataList"):
        lines.append("final metrics: " + " ".join(f"{m['MetricName']}={m['Value']:.6g}" for m in metrics))
    return "\n".join(lines)


def tuning_report(name: str, region: str | None = None) -> tuple[dict, dict | None]:
    """DescribeHyperParameterTuningJob, and DescribeTrainingJob of its best job (None until one has completed)."""
    client = _client(region)
    tuning = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    best = tuning.get("BestTrainingJob")
    return tuning, client.describe_training_job(TrainingJobName=best["TrainingJobName"]) if best else None


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


COMMANDS = {
    "train": (SageMakerArguments, TrainingJobArguments, DataChannels, LaunchArguments),
    "tune": (SageMakerArguments, TrainingJobArguments, DataChannels, SearchArguments, TuningArguments,
             LaunchArguments),
    "tune-report": (JobArguments,),
    "process": (SageMakerArguments, ProcessingArguments, LaunchArguments),
    "status": (JobArguments,),
}


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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)  # it logs to stdout, where --dry_run prints JSON
    logging.getLogger("sagemaker.telemetry").setLevel(logging.CRITICAL)  # the SDK's usage pings (see the README)
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")  # v2 is pinned on purpose (sagemaker.huggingface)
    from sagemaker.exceptions import UnexpectedStatusException

    argv = sys.argv[1:] if argv is None else argv
    usage = f"usage: python -m train.launch_sagemaker {{{','.join(COMMANDS)}}} [--help] [-- program options]"
    if not argv or argv[0] in ("-h", "--help"):
        print(f"{usage}\n\n{__doc__}", file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    command, *rest = argv
    if command not in COMMANDS:
        print(f"{usage}\nerror: unknown command {command!r}", file=sys.stderr)
        return 2
    split = rest.index("--") if "--" in rest else len(rest)
    rest, options = rest[:split], rest[split + 1:]
    if command in ("status", "tune-report") and rest and not rest[0].startswith("-"):
        rest = ["--name", *rest]
    *groups, unknown = HfArgumentParser(COMMANDS[command], prog=f"python -m train.launch_sagemaker {command}"
                                        ).parse_args_into_dataclasses(rest, return_remaining_strings=True)
    try:
        if unknown:
            raise ConfigError(f"unknown {command} option {unknown[0]} (options of the job's program go after --)")
        if options and command in ("status", "tune-report"):
            raise ConfigError(f"{command} takes no options after --")
        return run(command, tuple(groups), options)
    except UnexpectedStatusException as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 1
    except (ValueError, OSError, BotoCoreError, ClientError) as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
