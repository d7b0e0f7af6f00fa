"""S3 access shared by every stage: one client factory, URI parsing, streaming listing and overlapped reads.

Endpoints come from boto3's own configuration (``AWS_ENDPOINT_URL``, profiles) unless given explicitly, so the same
code talks to real S3, a local mirror such as moto's server, or any S3-compatible store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import boto3
import urllib3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from core.cli import UserError

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")


class S3Error(UserError):
    """A failure worth one line to the user: missing bucket, denied access, unreachable endpoint."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into bucket and key prefix; reject anything else with a clear message."""
    match = _S3_URI.match(uri)
    if not match:
        raise ValueError(f"not an S3 URI: {uri!r} (expected s3://bucket[/prefix])")
    return match["bucket"], match["key"] or ""


def is_s3_uri(path: str) -> bool:
    return path.startswith("s3://")


def anonymous(unsigned: bool | None) -> bool:
    """Whether to read anonymously: when asked, or when no AWS credentials exist (public data such as ABID)."""
    return unsigned if unsigned is not None else boto3.Session().get_credentials() is None


def client(endpoint_url: str | None = None, region: str | None = None, unsigned: bool | None = None,
           max_connections: int = 64):
    """An S3 client sized for many concurrent GETs; unsigned when asked, or when no credentials exist (public data)."""
    session = boto3.Session()
    unsigned = anonymous(unsigned)
    config = Config(
        max_pool_connections=max_connections,
        retries={"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", 5)), "mode": "adaptive"},
        connect_timeout=10,
        signature_version=UNSIGNED if unsigned else None,
    )
    return session.client("s3", endpoint_url=endpoint_url, region_name=region or session.region_name or "us-east-1",
                          config=config)


def explain(error: Exception, uri: str) -> S3Error:
    """Turn a botocore failure into one line a user can act on."""
    if isinstance(error, EndpointConnectionError):
        return S3Error(f"cannot reach the S3 endpoint for {uri}: {error}")
    if isinstance(error, NoCredentialsError):
        return S3Error(f"no AWS credentials found for {uri} (set AWS_PROFILE or AWS_ACCESS_KEY_ID, or use --unsigned)")
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return S3Error(f"bucket does not exist: {uri}")
        if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return S3Error(f"access denied to {uri} ({code})")
        if code in ("NoSuchKey", "404"):
            return S3Error(f"no such object: {uri}")
        return S3Error(f"S3 error for {uri}: {code} {error.response.get('Error', {}).get('Message', '')}".strip())
    if isinstance(error, BotoCoreError):
        return S3Error(f"S3 error for {uri}: {error}")
    return S3Error(f"{uri}: {error}")


def list_keys(s3, bucket: str, prefix: str) -> Iterator[str]:
    """Yield every key under ``prefix`` in S3's (lexicographic) order, one page at a time: memory stays flat."""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                yield item["Key"]
    except (BotoCoreError, ClientError) as error:
        raise explain(error, f"s3://{bucket}/{prefix}") from error


def get(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def anonymous_reader(bucket: str, endpoint_url: str | None = None, connections: int = 64) -> Callable[[str], bytes]:
    """key -> bytes with plain pooled HTTP GETs, for anonymous reads of a public bucket.

    botocore's request machinery costs about 2 ms of CPU per call, as much as decoding a bin image; a pooled GET costs
    a third of that, which is what makes a build from the public bucket fast on few cores. Signed access and listing
    stay with botocore.
    """
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    base = f"{endpoint.rstrip('/')}/{bucket}" if endpoint else f"https://{bucket}.s3.amazonaws.com"
    retries = urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504))
    pool = urllib3.PoolManager(maxsize=connections, retries=retries, timeout=urllib3.Timeout(connect=10, read=60))

    def read(key: str) -> bytes:
        response = pool.request("GET", f"{base}/{quote(key, safe='/~')}")
        if response.status != 200:
            reason = {403: "access denied", 404: "no such object"}.get(response.status, f"HTTP {response.status}")
            raise S3Error(f"{reason}: s3://{bucket}/{key}")
        return response.data

    return read


def read_many(read, keys: Iterable[str], workers: int = 32) -> Iterator[bytes | Exception]:
    """Read keys with up to ``workers`` requests in flight, yielding results in input order.

    A failed read yields its exception instead of raising, so one bad object never stops a batch. At most
    ``2 * workers`` reads are queued at once, so memory does not grow with the number of keys.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Future] = []
        for key in keys:
            pending.append(pool.submit(read, key))
            if len(pending) >= 2 * workers:
                yield _result(pending.pop(0))
        while pending:
            yield _result(pending.pop(0))


def _result(future: Future) -> bytes | Exception:
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - handed to the caller, who counts it as a bad record
        return error


def upload_dir(s3, local: Path, uri: str, workers: int = 32) -> int:
    """Upload a folder tree under an S3 prefix, many files in flight; returns the number of files."""
    bucket, prefix = parse_s3_uri(uri)
    files = [p for p in sorted(Path(local).rglob("*")) if p.is_file()]

    def put(path: Path) -> None:
        key = "/".join(part for part in (prefix.rstrip("/"), path.relative_to(local).as_posix()) if part)
        s3.upload_file(str(path), bucket, key)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, files))
    return len(files)


def download_prefix(s3, uri: str, local: Path) -> int:
    """Download every object under an S3 prefix into a folder, keeping relative paths; returns the number of files."""
    bucket, prefix = parse_s3_uri(uri)
    count = 0
    for key in list_keys(s3, bucket, prefix):
        relative = key[len(prefix):].lstrip("/") or Path(key).name
        target = Path(local) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        count += 1
    return count
