"""Training jobs: train.run in the Hugging Face training container, its data channels, spot settings and status.

Launcher options are checked before any API call; what the job's program takes (train.run's options) is checked
against that program's own options and passed as SageMaker hyperparameters (``--key value``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from cloud.s3 import parse_s3_uri
from cloud.sagemaker.containers import (
    TRAINING_CODE,
    TRAINING_CONTAINER,
    TRAINING_REQUIREMENTS,
    image_uri,
    is_gpu,
    upload_code,
)
from cloud.sagemaker.session import (
    ConfigError,
    account,
    check_instance_type,
    check_s3_uri,
    client as client_of,
    hub_token,
    redacted,
    session,
    tags_of,
)
from cloud.sagemaker.profiler import estimator_settings, rule_lines
from core.cli import option_names
from train.args import ARGUMENT_GROUPS, SAGEMAKER_CHECKPOINTS
from train.logs import metric_definitions

logger = logging.getLogger(__name__)


SPLITS = ("train", "validation", "test")

RESERVED_HYPERPARAMETERS = {
    "output_dir": f"the launcher sets it to {SAGEMAKER_CHECKPOINTS}, which SageMaker syncs with --checkpoint_s3_uri",
    "model_dir": "SageMaker sets it (SM_MODEL_DIR, uploaded as model.tar.gz)",
    "hub_token": "pass the token as HF_TOKEN in the environment: hyperparameters are shown in the console",
}


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
    profiler: bool = field(default=False, metadata={
        "help": "SageMaker system monitoring with the ProfilerReport and system-metric profiler rules "
                "(cloud/sagemaker/profiler.py says what still applies); training jobs only."})


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
class JobArguments:
    name: str = field(metadata={"help": "Job name (a tuning job's for tune-report)."})
    region: str | None = field(default=None, metadata={
        "help": "AWS region (default: $AWS_REGION, else the AWS configuration)."})


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
    for name, args in program_options(options, option_names(*ARGUMENT_GROUPS), "train.run").items():
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


def estimator(sm: SageMakerArguments, job: TrainingJobArguments, data: DataChannels, values: dict[str, str],
              name: str, requests: list[dict] | None = None, tuning: bool = False):
    """A ``HuggingFace`` estimator running train.run, and its channels (None for a Hub dataset).

    Every setting is checked first, then the code bundle (and a local dataset) is uploaded, except in a dry run: given
    a ``requests`` list (see ``session``)."""
    from sagemaker.huggingface import HuggingFace

    role, region, bucket = account(sm.role, sm.region, sm.bucket)
    instance_type, prefix = check_instance_type(job.instance_type), sm.prefix.strip("/")
    if job.instance_count < 1:
        raise ConfigError("--instance_count must be at least 1")
    distribution = {"torch_distributed": {"enabled": True}} if job.distributed and is_gpu(instance_type) else None
    if job.instance_count > 1 and not distribution:
        raise ConfigError("several instances need --distributed on GPU instances (ml.g*, ml.p*); otherwise each "
                          "would train its own copy")
    if tuning and job.profiler:
        raise ConfigError("--profiler applies to training jobs: a tuning job's trials cannot run profiler rules")
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
        sagemaker_session=sagemaker_session, **estimator_settings(job.profiler),
    ), inputs or None  # a Hub dataset: no channels at all (an empty list is an invalid request)


def train(sm: SageMakerArguments, job: TrainingJobArguments, data: DataChannels,
          options: list[str] | dict[str, object], wait: bool = True, dry_run: bool = False):
    """Launch train.run as a training job; returns the estimator (``estimator.latest_training_job.name``), or with
    ``dry_run`` the CreateTrainingJob request it would send."""
    from sagemaker.utils import name_from_base

    name, requests = name_from_base(job.base_job_name), [] if dry_run else None
    model, inputs = estimator(sm, job, data, hyperparameters(options), name, requests)
    model.fit(inputs, wait=wait and not dry_run, job_name=name)
    return redacted(requests) if dry_run else model


def job_status(name: str, region: str | None = None) -> dict:
    """DescribeTrainingJob of ``name``, or DescribeProcessingJob when no training job has that name."""
    client = client_of(region)
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
    return "\n".join(lines + rule_lines(job))
