"""Batch transform jobs over an S3 prefix of images, and collecting their answers into a results file."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from sagemaker.utils import name_from_base
from tqdm import tqdm

from cloud.sagemaker.model import ModelArguments, build_model, check_model, region_field
from cloud.sagemaker.session import NAME, ConfigError, check_s3_uri
from core.storage import Store


NO_ANSWER = "no answer: the container refused this image or the job stopped first (see the job's logs)"


@dataclass
class TransformArguments:
    input_uri: str = field(metadata={"help": "s3:// prefix of the images (every object under it is one request)."})
    output_uri: str = field(metadata={"help": "s3:// prefix for the answers (<input key>.out)."})
    instance_type: str = field(default="ml.m5.xlarge", metadata={"help": "Instance type of the transform job."})
    instance_count: int = field(default=1, metadata={"help": "Instances of the transform job."})
    job_name: str | None = field(default=None, metadata={"help": "Job name (default: bincount-<timestamp>)."})
    results: str | None = field(default=None, metadata={
        "help": "Collect the answers into this .csv or .jsonl once the job is done (needs --wait)."})
    wait: bool = field(default=True, metadata={"help": "Wait for the job to finish."})


@dataclass
class CollectArguments:
    input_uri: str = field(metadata={"help": "s3:// prefix the transform job read its images from."})
    output_uri: str = field(metadata={"help": "s3:// prefix it wrote its answers to."})
    results: str = field(metadata={"help": "Results file: .csv or .jsonl."})
    region: str | None = region_field()


def folder_uri(uri: str, what: str) -> str:
    """An S3 prefix as a folder (``s3://bucket/prefix/``): output keys are input keys relative to it."""
    check_s3_uri(uri, what)
    return uri if uri.endswith("/") else uri + "/"


def batch_transform(model: ModelArguments, transform: TransformArguments) -> str:
    """Start a transform job over every image under an S3 prefix, one image per request; returns the job name.

    The container answers each object with the handler's JSON, written to ``<output_uri>/<input key>.out``.
    """
    input_uri = folder_uri(transform.input_uri, "--input_uri")
    output_uri = folder_uri(transform.output_uri, "--output_uri")
    if transform.results:
        check_results(transform.results)
        if not transform.wait:
            raise ConfigError("--results needs --wait: the answers exist only once the job is done")
    job_name = transform.job_name or name_from_base("bincount")
    if not NAME.match(job_name):
        raise ConfigError(f"invalid job name {job_name!r}: letters, digits and hyphens, up to 63")
    model = check_model(model, transform.instance_type)
    transformer = build_model(model, transform.instance_type, name_from_base(job_name)).transformer(
        instance_count=transform.instance_count, instance_type=transform.instance_type, strategy="SingleRecord",
        output_path=output_uri, accept="application/json")
    transformer.transform(input_uri, data_type="S3Prefix", content_type="image/jpeg", split_type=None,
                          job_name=job_name, wait=transform.wait, logs=False)
    if transform.results:
        write_results(collect(input_uri, output_uri, model.region), transform.results)
    return job_name


def collect(input_uri: str, output_uri: str, region: str | None = None, workers: int = 32) -> list[dict]:
    """One row per input image from a finished transform job's ``.out`` answers, in input order.

    An image without an answer (the container refused it, or the job stopped) gets an ``error``.
    """
    from inference.predict import image_id

    input_uri, output_uri = folder_uri(input_uri, "--input_uri"), folder_uri(output_uri, "--output_uri")
    inputs = [key for key in Store(input_uri.rstrip("/"), region=region).list() if not key.endswith("/")]
    answers = Store(output_uri.rstrip("/"), region=region)
    listed = set(answers.list())
    present = [f"{relative}.out" for relative in inputs if f"{relative}.out" in listed]
    bodies = answers.read_many(present, workers)
    found = dict(zip(present, tqdm(bodies, total=len(present), unit="answer", desc="collecting")))
    rows = []
    for relative in inputs:
        key = f"{relative}.out"
        answer = parse_answer(found[key], answers.uri(key)) if key in found else {"error": NO_ANSWER}
        rows.append({"id": image_id(relative), "path": input_uri + relative, **answer})
    return rows


def parse_answer(body: bytes | Exception, uri: str) -> dict:
    """The handler's JSON answer for one image, or an ``error`` saying why there is none."""
    if isinstance(body, Exception):
        return {"error": str(body)}
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"error": f"{uri} is not JSON"}
    if not isinstance(answer, dict) or not ({"probabilities", "error"} & set(answer)):
        return {"error": f"{uri} is not a bin-count answer"}
    return answer


def check_results(path: str) -> None:
    """Refuse a results file of unknown format before any API call."""
    from inference.predict import results_format

    results_format(path)


def write_results(rows: list[dict], path: str) -> None:
    """Collected rows to CSV or JSON Lines, in the columns ``inference.predict`` writes (without verify)."""
    from inference.predict import ResultWriter

    labels = next((list(row["probabilities"]) for row in rows if "probabilities" in row), [])
    with ResultWriter(path, labels, verify=False) as writer:
        for row in rows:
            writer.write(row)
    errors = sum("error" in row for row in rows)
    print(f"{len(rows)} images: {len(rows) - errors} counted, {errors} errors; written to {path}", file=sys.stderr)
