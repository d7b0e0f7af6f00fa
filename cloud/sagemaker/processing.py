"""Processing jobs: the dataset build (data.build) on N instances writing shards, then one assembling them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cloud.sagemaker.containers import PROCESSING_CODE, PROCESSING_CONTAINER, PROCESSING_REQUIREMENTS, image_uri, \
    upload_code
from cloud.sagemaker.session import (
    ConfigError,
    account,
    check_instance_type,
    check_s3_uri,
    hub_token,
    redacted,
    session,
    tags_of,
)
from cloud.sagemaker.training import SageMakerArguments, program_options
from core.cli import option_names

logger = logging.getLogger(__name__)


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


def build_options() -> set[str]:
    from data.build import OutputArguments, SelectionArguments, SourceArguments

    return option_names(SourceArguments, SelectionArguments, OutputArguments)


def process(sm: SageMakerArguments, build: ProcessingArguments, options: list[str], wait: bool = True,
            dry_run: bool = False) -> list[str] | list[dict]:
    """Build the dataset with data.build in Processing jobs: shards on ``instance_count`` instances, then the assembly
    on one. Returns the job names, or with ``dry_run`` the CreateProcessingJob requests it would send."""
    from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
    from sagemaker.utils import name_from_base

    role, region, bucket = account(sm.role, sm.region, sm.bucket)
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
