"""What every SageMaker job shares: the settings checks, the SDK session (with its dry run) and small helpers.

Everything a job needs is checked here before any API call — role, region, bucket, instance type shape, S3 URIs — so
a mistake costs one clear line instead of a half-created job. Whether an instance family exists (and offers the job
kind) is left to SageMaker's own API and the SDK's image lookup, which know the current list.
"""

from __future__ import annotations

import os
import re
from copy import deepcopy
from functools import partial
from pathlib import Path

from core.cli import UserError

ROOT = Path(__file__).resolve().parents[2]
_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_INSTANCE = re.compile(r"^ml\.(?P<family>[a-z0-9]+)\.(?P<size>medium|large|\d*xlarge|metal)$")
_SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY", re.IGNORECASE)
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # endpoint, model and job names


class ConfigError(UserError):
    """A launch setting that is missing or malformed: one line for the user, before any API call."""


def check_role(role: str | None) -> str:
    role = role or os.environ.get("SAGEMAKER_ROLE")
    if not role:
        raise ConfigError("no execution role: pass --role arn:aws:iam::<account>:role/<name> or set SAGEMAKER_ROLE")
    if not _ROLE.match(role):
        raise ConfigError(f"not an IAM role ARN: {role!r} (expected arn:aws:iam::<12 digits>:role/<name>)")
    return role


def check_region(region: str | None) -> str:
    import boto3

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or \
        boto3.Session().region_name
    if not region:
        raise ConfigError("no AWS region: pass --region or set AWS_REGION")
    if not _REGION.match(region):
        raise ConfigError(f"not an AWS region: {region!r}")
    return region


def check_bucket(bucket: str | None) -> str:
    bucket = bucket or os.environ.get("SAGEMAKER_BUCKET")
    if not bucket:
        raise ConfigError("no S3 bucket for code and artifacts: pass --bucket or set SAGEMAKER_BUCKET")
    if not _BUCKET.match(bucket):
        raise ConfigError(f"not an S3 bucket name: {bucket!r}")
    return bucket


def account(role: str | None, region: str | None, bucket: str | None) -> tuple[str, str, str]:
    """A job's (role, region, bucket), each from its option or environment variable, each checked."""
    return check_role(role), check_region(region), check_bucket(bucket)


def check_instance_type(instance_type: str, local_ok: bool = False) -> str:
    """An instance type shaped like ``ml.<family>.<size>`` (``local`` / ``local_gpu`` for SageMaker local mode when
    allowed); SageMaker itself refuses a family that does not exist."""
    if local_ok and instance_type in ("local", "local_gpu"):
        return instance_type
    if not _INSTANCE.match(instance_type or ""):
        raise ConfigError(f"unknown instance type {instance_type!r} (e.g. ml.g5.xlarge, ml.p4d.24xlarge, "
                          f"ml.m5.xlarge)")
    return instance_type


def check_s3_uri(uri: str, what: str) -> str:
    from cloud.s3 import parse_s3_uri

    try:
        parse_s3_uri(uri)
    except ValueError as error:
        raise ConfigError(f"{what}: {error}") from None
    return uri


def session(region: str, bucket: str, dry_run: list[dict] | None = None):
    """A SageMaker session in ``region`` that keeps code and artifacts in ``bucket``.

    Endpoints follow boto3's configuration, so ``AWS_ENDPOINT_URL`` points it at a local stand-in unchanged. Given a
    ``dry_run`` list, every SageMaker ``Create*`` request is appended to it as {"operation", "request"} and answered
    locally as a success instead of being sent: the SDK carries on, and nothing is created.
    """
    import boto3
    import sagemaker

    boto_session = boto3.Session(region_name=region)
    if dry_run is not None:
        boto_session.events.register("before-parameter-build.sagemaker", partial(_record_create, dry_run))
        boto_session.events.register("before-call.sagemaker", _answer_create)
    return sagemaker.Session(boto_session=boto_session, default_bucket=bucket)


def _record_create(requests: list[dict], params: dict, model, **_) -> None:
    if model.name.startswith("Create"):
        requests.append({"operation": model.name, "request": deepcopy(params)})


def _answer_create(model, **_):
    from botocore.awsrequest import AWSResponse

    if model.name.startswith("Create"):
        return AWSResponse(url="", status_code=200, headers={}, raw=None), {}
    return None


def redacted(request):
    """A copy of a request with secret-looking environment values (HF_TOKEN, ...) masked, at any depth, for printing."""
    if isinstance(request, list):
        return [redacted(item) for item in request]
    if not isinstance(request, dict):
        return request
    masked = {key: redacted(value) for key, value in request.items()}
    if isinstance(masked.get("Environment"), dict):
        masked["Environment"] = {key: "***" if _SECRET.search(key) else value
                                 for key, value in masked["Environment"].items()}
    return masked


def client(region: str | None):
    """A boto3 SageMaker client in ``region`` (checked)."""
    import boto3

    return boto3.Session(region_name=check_region(region)).client("sagemaker")


def hub_token() -> dict[str, str]:
    """The environment of a job that pushes to the Hub: our HF_TOKEN, never a hyperparameter (those are shown)."""
    if not os.environ.get("HF_TOKEN"):
        raise ConfigError("--push_to_hub needs HF_TOKEN in the environment (it is passed to the job, never printed)")
    return {"HF_TOKEN": os.environ["HF_TOKEN"]}


def tags_of(tags: list[str]) -> list[dict[str, str]]:
    """``key=value`` strings as SageMaker tags."""
    pairs = [tag.partition("=") for tag in tags]
    if any(not key or not sep for key, sep, _ in pairs):
        raise ConfigError(f"tags are key=value, got {' '.join(tags)}")
    return [{"Key": key, "Value": value} for key, _, value in pairs]
