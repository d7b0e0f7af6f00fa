"""Serve the bin counter on SageMaker with the Hugging Face inference container (SageMaker SDK v2).

    python -m inference.deploy package --model_dir runs/model
    python -m inference.deploy deploy --endpoint_name bincount --model_data s3://bucket/bincount/models/.../model.tar.gz
    python -m inference.deploy deploy --endpoint_name bincount --hub_model_id org/bincount --serverless_memory_mb 4096
    python -m inference.deploy deploy --endpoint_name bincount --model_data ... --async_output_path s3://bucket/async/
    python -m inference.deploy batch-transform --model_data ... --input_uri s3://bucket/bin-images/ \
        --output_uri s3://bucket/counts/ --results counts.csv
    python -m inference.deploy collect --input_uri s3://bucket/bin-images/ --output_uri s3://bucket/counts/ \
        --results counts.jsonl
    python -m inference.deploy delete --endpoint_name bincount

Role, region and bucket come from --role/$SAGEMAKER_ROLE, --region/$AWS_REGION and --bucket/$SAGEMAKER_BUCKET, and
every setting is checked before the first API call. Each command is a function for notebooks: ``package``,
``deploy``, ``batch_transform``, ``collect``, ``delete``; ``BinCountPredictor.count`` sends an image file.

Every endpoint runs our handler (inference/handler.py, shipped as ``code/inference.py``), never the toolkit's
default pipeline:
- ``package`` writes it into model.tar.gz beside the weights, with ``code/requirements.txt`` pinning Pillow to the
  training pin, so JPEG decoding matches training (the container's own torch and transformers 4.51.3 run the handler).
- A Hub model (``HF_MODEL_ID``) is downloaded by the container at start-up, but the toolkit imports user code only
  from ``/opt/ml/model/code`` (put on PYTHONPATH) or a ``code/`` folder inside the Hub repository (which would be
  found first). So the model data is then a code-only model.tar.gz.
- ``SAGEMAKER_PROGRAM=inference.py`` is set explicitly: for a model without an entry point the SDK sets it to "", the
  toolkit then finds no user module and silently serves its default pipeline.

The handler and ``inference.predict`` (result files) are imported where they are used: they bring torch, which
packaging, deploying and deleting do without, so the command line answers in seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# SDK v2 is this project's pin: no deprecation warning on every run (set before sagemaker is imported)
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image, UnidentifiedImageError
from sagemaker import image_uris
from sagemaker.async_inference import AsyncInferenceConfig
from sagemaker.deserializers import JSONDeserializer
from sagemaker.huggingface import HuggingFaceModel
from sagemaker.predictor import Predictor
from sagemaker.serializers import IdentitySerializer
from sagemaker.serverless import ServerlessInferenceConfig
from sagemaker.utils import name_from_base
from tqdm import tqdm
from transformers import HfArgumentParser

from cloud import s3 as cloud_s3
from core import labels as core_labels
from core import storage
from core.storage import Store
from cloud.session import (
    ConfigError,
    check_bucket,
    check_instance_type,
    check_region,
    check_role,
    check_s3_uri,
    pinned,
    session,
)

HANDLER = Path(__file__).with_name("handler.py")
# What the handler imports from the project (both standard library only): the label rule and the user-error base.
SHIPPED_CORE = tuple(Path(core_labels.__file__).with_name(name) for name in ("__init__.py", "labels.py", "cli.py"))
CODE_REQUIREMENTS = ("pillow",)  # the container has torch and transformers; Pillow decodes JPEGs as in training
TRANSFORMERS_VERSION = "4.51.3"  # the newest Hugging Face inference container SDK v2 knows
PYTORCH_VERSION = "2.6.0"
PY_VERSION = "py312"
WEIGHTS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
MODEL_FILES = ("config.json", "preprocessor_config.json", "README.md")  # the card travels with the weights
GZIP_LEVEL = 1  # safetensors weights barely compress; higher levels only cost time
NO_ANSWER = "no answer: the container refused this image or the job stopped first (see the job's logs)"
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # endpoint, model and job names


def region_field() -> Any:
    return field(default=None, metadata={"help": "AWS region (default: $AWS_REGION, else the AWS configuration)."})


def bucket_field() -> Any:
    return field(default=None, metadata={"help": "S3 bucket for model artifacts (default: $SAGEMAKER_BUCKET)."})


@dataclass
class PackageArguments:
    model_dir: str = field(metadata={"help": "Training output folder (model.safetensors, config.json, "
                                             "preprocessor_config.json); checkpoints and logs are left out."})
    s3_uri: str | None = field(default=None, metadata={
        "help": "Where to upload model.tar.gz (default: s3://<bucket>/bincount/models/<folder>-<hash>/model.tar.gz)."})
    region: str | None = region_field()
    bucket: str | None = bucket_field()


@dataclass
class ModelArguments:
    model_data: str | None = field(default=None, metadata={"help": "s3://.../model.tar.gz written by `package`."})
    hub_model_id: str | None = field(default=None, metadata={
        "help": "Serve this public Hugging Face Hub model instead (the container downloads it: HF_MODEL_ID)."})
    hub_revision: str | None = field(default=None, metadata={"help": "Hub revision to pin (HF_MODEL_REVISION)."})
    role: str | None = field(default=None, metadata={
        "help": "SageMaker execution role ARN (default: $SAGEMAKER_ROLE)."})
    region: str | None = region_field()
    bucket: str | None = bucket_field()
    image_uri: str | None = field(default=None, metadata={
        "help": f"Container image (default: the Hugging Face inference container, transformers "
                f"{TRANSFORMERS_VERSION}, PyTorch {PYTORCH_VERSION}, CPU or GPU build by instance type)."})
    match_threshold: float | None = field(default=None, metadata={
        "help": "Verify: 'match' when P(expected quantity) >= this (BINCOUNT_MATCH_THRESHOLD; handler default 0.5)."})
    mismatch_threshold: float | None = field(default=None, metadata={
        "help": "Verify: 'mismatch' when P(expected quantity) <= this (BINCOUNT_MISMATCH_THRESHOLD; handler default "
                "0.1)."})
    cpu_threads: int = field(default=1, metadata={
        "help": "Torch threads per model-server worker on CPU (the server starts one worker per vCPU, so 1 avoids "
                "oversubscription; for lowest latency of single requests use --workers 1 --cpu_threads <vCPUs>)."})
    workers: int | None = field(default=None, metadata={
        "help": "Model-server workers per instance (default: one per vCPU, one per GPU)."})


@dataclass
class EndpointArguments:
    endpoint_name: str = field(metadata={"help": "Endpoint to create (its endpoint config gets the same name, its "
                                                 "model the name and a time stamp)."})
    instance_type: str = field(default="ml.m5.xlarge", metadata={"help": "Instance type of a real-time or async "
                                                                         "endpoint (ml.g5.xlarge for a GPU)."})
    instance_count: int = field(default=1, metadata={"help": "Instances behind the endpoint."})
    serverless_memory_mb: int | None = field(default=None, metadata={
        "help": "Serverless endpoint with this much memory (1024-6144, steps of 1024) instead of instances."})
    serverless_max_concurrency: int = field(default=5, metadata={"help": "Concurrent requests of a serverless "
                                                                         "endpoint."})
    async_output_path: str | None = field(default=None, metadata={
        "help": "Asynchronous endpoint writing its answers under this s3:// prefix."})
    wait: bool = field(default=True, metadata={"help": "Wait until the endpoint is in service."})


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


@dataclass
class DeleteArguments:
    endpoint_name: str = field(metadata={"help": "Endpoint to delete, with its endpoint config and model(s)."})
    region: str | None = region_field()


# Package

def model_files(model_dir: Path) -> list[Path]:
    """What the endpoint loads from a training output folder: weights, config and processor (plus the model card)."""
    if not model_dir.is_dir():
        raise ConfigError(f"model folder {model_dir} does not exist")
    weights = sorted({path for pattern in WEIGHTS for path in model_dir.glob(pattern)})
    if not weights:
        raise ConfigError(f"no weights in {model_dir}: expected model.safetensors as train.run saves it (the handler "
                          f"loads safetensors only)")
    for name in MODEL_FILES[:2]:
        if not (model_dir / name).is_file():
            raise ConfigError(f"{model_dir} has no {name}: pass the folder train.run wrote the final model to")
    id2label = json.loads((model_dir / "config.json").read_text()).get("id2label", {})
    try:
        core_labels.counts_of([id2label[key] for key in sorted(id2label, key=int)])
    except ValueError as error:
        raise ConfigError(f"{model_dir}/config.json: {error}") from None
    return weights + [model_dir / name for name in MODEL_FILES if (model_dir / name).is_file()]


def code_files() -> dict[str, bytes]:
    """``code/`` of model.tar.gz: the handler as the toolkit's user module, and what it needs beyond the container."""
    requirements = "\n".join(pinned(CODE_REQUIREMENTS)) + "\n"
    return {"code/inference.py": HANDLER.read_bytes(), **{f"code/core/{path.name}": path.read_bytes() for path in
                                                          SHIPPED_CORE}, "code/requirements.txt": requirements.encode(),
            "code/preprocess.py": HANDLER.with_name("preprocess.py").read_bytes()}  # the handler's fast path


def build_tarball(tarball: Path, model_dir: Path | None = None) -> list[str]:
    """Write model.tar.gz (model files at the root, ``code/`` beside them; code only without ``model_dir``).

    The archive is reproducible (no time stamps or owners), so equal contents give equal bytes and the same S3 key.
    """
    files = model_files(model_dir) if model_dir else []
    with open(tarball, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                   compresslevel=GZIP_LEVEL) as compressed, \
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            size = path.stat().st_size
            with tqdm.wrapattr(path.open("rb"), "read", total=size, desc=f"packing {path.name}",
                               disable=size < 2**26) as file:
                tar.addfile(_entry(path.name, size), file)
        for name, data in code_files().items():
            tar.addfile(_entry(name, len(data)), io.BytesIO(data))
        return tar.getnames()


def _entry(name: str, size: int) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.size, entry.mode = size, 0o644
    return entry


def package(model_dir: str | Path | None, s3_uri: str | None = None, region: str | None = None,
            bucket: str | None = None) -> str:
    """Build model.tar.gz from a training output folder (or the code alone, for a Hub model) and upload it.

    Without ``s3_uri`` it goes to ``s3://<bucket>/bincount/{models/<folder>,code}-<hash>/model.tar.gz``: a new
    model never overwrites the artifact a running endpoint's new instances would download.
    """
    region = check_region(region)
    if s3_uri:
        check_s3_uri(s3_uri, "--s3_uri")
    else:
        bucket = check_bucket(bucket)
    with tempfile.TemporaryDirectory() as folder:
        tarball = Path(folder) / "model.tar.gz"
        build_tarball(tarball, Path(model_dir) if model_dir else None)
        if not s3_uri:
            with tarball.open("rb") as file:
                digest = hashlib.file_digest(file, "sha256").hexdigest()[:12]
            name = f"models/{Path(model_dir).resolve().name}" if model_dir else "code"
            s3_uri = f"s3://{bucket}/bincount/{name}-{digest}/model.tar.gz"
        elif not s3_uri.endswith(".tar.gz"):
            s3_uri = s3_uri.rstrip("/") + "/model.tar.gz"
        return storage.upload(tarball, s3_uri, region)


# Model and endpoint

def container_image(region: str, instance_type: str | None = None) -> str:
    """The Hugging Face inference container for an instance type (None: serverless, which runs on CPU)."""
    serverless = ServerlessInferenceConfig() if instance_type is None else None
    return image_uris.retrieve("huggingface", region, version=TRANSFORMERS_VERSION,
                               base_framework_version=f"pytorch{PYTORCH_VERSION}", py_version=PY_VERSION,
                               instance_type=instance_type, serverless_inference_config=serverless,
                               image_scope="inference")


def is_gpu(instance_type: str | None) -> bool:
    return instance_type is not None and instance_type.split(".")[1].startswith(("g", "p"))


def endpoint_env(args: ModelArguments, gpu: bool) -> dict[str, str]:
    """The container's environment: our handler, the task the toolkit insists on, thresholds, CPU threads."""
    env = {"HF_TASK": "image-classification", "SAGEMAKER_PROGRAM": "inference.py"}
    if args.hub_model_id:
        env["HF_MODEL_ID"] = args.hub_model_id
        if args.hub_revision:
            env["HF_MODEL_REVISION"] = args.hub_revision
    if args.match_threshold is not None:
        env["BINCOUNT_MATCH_THRESHOLD"] = str(args.match_threshold)
    if args.mismatch_threshold is not None:
        env["BINCOUNT_MISMATCH_THRESHOLD"] = str(args.mismatch_threshold)
    if not gpu:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.cpu_threads)
    return env


def check_model(args: ModelArguments, instance_type: str | None) -> ModelArguments:
    """Resolve role, region and bucket and check every model setting: a mistake is one line before any API call."""
    if bool(args.model_data) == bool(args.hub_model_id):
        raise ConfigError("give one of --model_data (s3://.../model.tar.gz) or --hub_model_id")
    if args.model_data:
        check_s3_uri(args.model_data, "--model_data")
        if not args.model_data.endswith(".tar.gz"):
            raise ConfigError(f"--model_data must be a model.tar.gz, got {args.model_data}")
    if instance_type is not None:
        check_instance_type(instance_type)
        if instance_type.split(".")[1].startswith(("inf", "trn")):
            raise ConfigError(f"{instance_type} is a Neuron instance: the handler runs on CPU or NVIDIA GPU instances")
    if args.cpu_threads < 1 or (args.workers is not None and args.workers < 1):
        raise ConfigError("--cpu_threads and --workers must be at least 1")
    from inference.handler import Settings

    try:
        Settings(**{name: getattr(args, name) for name in ("match_threshold", "mismatch_threshold")
                    if getattr(args, name) is not None}).checked()
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return replace(args, role=check_role(args.role), region=check_region(args.region),
                   bucket=check_bucket(args.bucket))


def build_model(args: ModelArguments, instance_type: str | None, name: str) -> HuggingFaceModel:
    """A HuggingFaceModel running our handler on the weights in S3 or from the Hub (args checked by check_model)."""
    model_data = args.model_data or package(None, region=args.region, bucket=args.bucket)
    return HuggingFaceModel(
        name=name, model_data=model_data, role=args.role, env=endpoint_env(args, is_gpu(instance_type)),
        image_uri=args.image_uri or container_image(args.region, instance_type), model_server_workers=args.workers,
        predictor_cls=BinCountPredictor, sagemaker_session=session(args.region, args.bucket))


class BinCountPredictor(Predictor):
    """The endpoint from Python: ``count(path or bytes)`` sends one image with its content type, returns the answer."""

    def __init__(self, endpoint_name: str, sagemaker_session: Any = None, **kwargs: Any):
        super().__init__(endpoint_name, sagemaker_session, serializer=IdentitySerializer("image/jpeg"),
                         deserializer=JSONDeserializer(), **kwargs)

    def count(self, image: str | Path | bytes) -> dict:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        return self.predict(data, initial_args={"ContentType": image_content_type(data)})


def image_content_type(data: bytes) -> str:
    """image/jpeg, image/png, ... from the image's own header, whatever its file is called."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME[image.format]
    except (UnidentifiedImageError, KeyError):
        raise ValueError("not an image the endpoint reads (JPEG, PNG, WebP, BMP, GIF, TIFF)") from None


def deploy(model: ModelArguments, endpoint: EndpointArguments) -> Predictor:
    """Create the model, endpoint config and endpoint: real-time on instances, serverless, or asynchronous."""
    if not _NAME.match(endpoint.endpoint_name):
        raise ConfigError(f"invalid endpoint name {endpoint.endpoint_name!r}: letters, digits and hyphens, up to 63")
    serverless = None
    if endpoint.serverless_memory_mb is not None:
        if endpoint.async_output_path:
            raise ConfigError("an endpoint is serverless or asynchronous, not both")
        if endpoint.serverless_memory_mb not in range(1024, 6145, 1024):
            raise ConfigError(f"--serverless_memory_mb must be 1024, 2048, ... or 6144, got "
                              f"{endpoint.serverless_memory_mb}")
        serverless = ServerlessInferenceConfig(memory_size_in_mb=endpoint.serverless_memory_mb,
                                               max_concurrency=endpoint.serverless_max_concurrency)
    if endpoint.async_output_path:
        check_s3_uri(endpoint.async_output_path, "--async_output_path")
    instance_type = None if serverless else endpoint.instance_type
    model = check_model(model, instance_type)
    hosted = build_model(model, instance_type, name_from_base(endpoint.endpoint_name))
    asynchronous = AsyncInferenceConfig(output_path=endpoint.async_output_path) if endpoint.async_output_path else None
    return hosted.deploy(
        initial_instance_count=None if serverless else endpoint.instance_count, instance_type=instance_type,
        serverless_inference_config=serverless, async_inference_config=asynchronous,
        endpoint_name=endpoint.endpoint_name, wait=endpoint.wait)


def delete(endpoint_name: str, region: str | None = None) -> list[str]:
    """Delete an endpoint, its endpoint config and its model(s); returns what was deleted."""
    client = session(check_region(region), None).sagemaker_client
    config = client.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    variants = client.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    client.delete_endpoint(EndpointName=endpoint_name)
    client.delete_endpoint_config(EndpointConfigName=config)
    models = sorted({variant["ModelName"] for variant in variants})
    for model in models:
        client.delete_model(ModelName=model)
    return [f"endpoint {endpoint_name}", f"endpoint config {config}", *(f"model {model}" for model in models)]


# Batch transform

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
    if not _NAME.match(job_name):
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


# Command line

COMMANDS: dict[str, tuple[type, ...]] = {
    "package": (PackageArguments,),
    "deploy": (ModelArguments, EndpointArguments),
    "batch-transform": (ModelArguments, TransformArguments),
    "collect": (CollectArguments,),
    "delete": (DeleteArguments,),
}


def run(command: str, groups: Iterable[Any]) -> str:
    """Run one command; returns the line that reports what it did."""
    groups = list(groups)
    if command == "package":
        (args,) = groups
        return f"uploaded {package(args.model_dir, args.s3_uri, args.region, args.bucket)}"
    if command == "deploy":
        predictor = deploy(*groups)
        return f"endpoint {predictor.endpoint_name} {'in service' if groups[1].wait else 'creating'}"
    if command == "batch-transform":
        return f"transform job {batch_transform(*groups)} {'done' if groups[1].wait else 'started'}"
    if command == "collect":
        (args,) = groups
        check_results(args.results)
        write_results(collect(args.input_uri, args.output_uri, check_region(args.region)), args.results)
        return f"collected into {args.results}"
    if command == "delete":
        (args,) = groups
        return "deleted " + ", ".join(delete(args.endpoint_name, args.region))
    raise ValueError(f"unknown command {command!r}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = f"usage: python -m inference.deploy {{{','.join(COMMANDS)}}} [--help]"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    command, *rest = argv
    if command not in COMMANDS:
        print(f"{usage}\nerror: unknown command {command!r}", file=sys.stderr)
        return 2
    groups = HfArgumentParser(COMMANDS[command], prog=f"python -m inference.deploy {command}"
                              ).parse_args_into_dataclasses(rest)
    try:
        print(run(command, groups))
    except (ValueError, OSError, cloud_s3.S3Error, BotoCoreError, ClientError) as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
