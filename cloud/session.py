"""SageMaker plumbing shared by the launchers (training, tuning, processing, deployment).

Everything a job needs is checked here before any API call — role, region, bucket, instance type, S3 URIs — so a
mistake costs one clear line instead of a half-created job. Code bundles are staged from the project's own packages
with a ``requirements.txt`` derived from the root pins: one source of truth for code and versions, locally and in the
containers.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from copy import deepcopy
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
# SageMaker instance families (training, processing and hosting); sizes are checked by shape.
INSTANCE_FAMILIES = {
    "t2", "t3", "m4", "m5", "m5d", "m6i", "m6id", "m7i", "c4", "c5", "c5d", "c5n", "c6i", "c6id", "c7i", "r5", "r5d",
    "r6i", "r7i", "g4dn", "g5", "g6", "g6e", "p2", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "trn1", "trn1n",
    "trn2", "inf1", "inf2",
}
_INSTANCE = re.compile(r"^ml\.(?P<family>[a-z0-9]+)\.(?P<size>medium|large|\d*xlarge|metal)$")
_SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY", re.IGNORECASE)


class ConfigError(ValueError):
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


def check_instance_type(instance_type: str, local_ok: bool = False) -> str:
    """A known SageMaker instance type (``local`` / ``local_gpu`` for SageMaker local mode when allowed)."""
    if local_ok and instance_type in ("local", "local_gpu"):
        return instance_type
    match = _INSTANCE.match(instance_type or "")
    if not match or match["family"] not in INSTANCE_FAMILIES:
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


def pinned(names: Iterable[str], requirements: Path = ROOT / "requirements.txt") -> list[str]:
    """The root pins (``name==version``) of ``names``, in the order given; a name without a pin is an error."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            pins[re.split(r"[\[=<>]", line)[0].lower()] = line
    missing = [name for name in names if name.lower() not in pins]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not pinned in {requirements}")
    return [pins[name.lower()] for name in names]


def stage_bundle(dest: Path, packages: Iterable[str], requirements: Iterable[str]) -> Path:
    """Copy the project's ``packages`` (folders or single files under the root) into ``dest`` with a pinned
    ``requirements.txt``."""
    dest.mkdir(parents=True, exist_ok=True)
    for package in packages:
        if (ROOT / package).is_file():
            (dest / package).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / package, dest / package)
            continue
        shutil.copytree(ROOT / package, dest / package, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
    (dest / "requirements.txt").write_text("\n".join(pinned(requirements)) + "\n")
    return dest


def pack_bundle(tarball: Path, packages: Iterable[str], requirements: Iterable[str]) -> Path:
    """``stage_bundle`` into a ``sourcedir.tar.gz``-style tarball: the layout SageMaker unpacks as the code folder."""
    with tempfile.TemporaryDirectory() as tmp:
        staged = stage_bundle(Path(tmp), packages, requirements)
        with tarfile.open(tarball, "w:gz") as tar:
            for path in sorted(staged.iterdir()):
                tar.add(path, arcname=path.name)
    return tarball
