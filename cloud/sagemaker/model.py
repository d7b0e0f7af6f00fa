"""The model artifact of an endpoint or transform job: model.tar.gz (weights + our handler) and its SageMaker model.

Every endpoint runs our handler (inference/handler.py, shipped as ``code/inference.py`` with the few project modules
it imports), never the toolkit's default pipeline:
- ``package`` writes it into model.tar.gz beside the weights, with ``code/requirements.txt`` pinning Pillow to the
  training pin, so JPEG decoding matches training (the container's own torch and transformers run the handler).
- A Hub model (``HF_MODEL_ID``) is downloaded by the container at start-up, but the toolkit imports user code only
  from ``/opt/ml/model/code`` (put on PYTHONPATH) or a ``code/`` folder inside the Hub repository (which would be
  found first). So the model data is then a code-only model.tar.gz.
- ``SAGEMAKER_PROGRAM=inference.py`` is set explicitly: for a model without an entry point the SDK sets it to "", the
  toolkit then finds no user module and silently serves its default pipeline.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

import core
from cloud.sagemaker.containers import PYTORCH_VERSION, TRANSFORMERS_VERSION, container_image, is_gpu, pinned
from cloud.sagemaker.session import ROOT, ConfigError, account, check_bucket, check_instance_type, check_region, \
    check_s3_uri, session
from core import labels as core_labels
from core import storage


HANDLER = ROOT / "inference" / "handler.py"
SHIPPED_CORE = tuple(ROOT / path for path in core.SHIPPED)
CODE_REQUIREMENTS = ("pillow",)  # the container has torch and transformers; Pillow decodes JPEGs as in training
WEIGHTS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
MODEL_FILES = ("config.json", "preprocessor_config.json", "README.md", "verify.json")  # card, verify thresholds
GZIP_LEVEL = 1  # safetensors weights barely compress; higher levels only cost time


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
    onnx: bool = field(default=False, metadata={
        "help": "Also ship the model's ONNX export (onnx/model-<weights hash>.onnx), so inference.serve run from the "
                "package starts without exporting."})


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
                                                          SHIPPED_CORE}, "code/requirements.txt": requirements.encode()}


def build_tarball(tarball: Path, model_dir: Path | None = None, onnx: bool = False) -> list[str]:
    """Write model.tar.gz (model files at the root, ``code/`` beside them; code only without ``model_dir``).

    The archive is reproducible (no time stamps or owners), so equal contents give equal bytes and the same S3 key.
    """
    files = [(path.name, path) for path in model_files(model_dir)] if model_dir else []
    if onnx and model_dir:
        export = onnx_export(model_dir)
        files.append((f"onnx/{export.name}", export))
    with open(tarball, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                   compresslevel=GZIP_LEVEL) as compressed, \
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in files:
            size = path.stat().st_size
            with tqdm.wrapattr(path.open("rb"), "read", total=size, desc=f"packing {path.name}",
                               disable=size < 2**26) as file:
                tar.addfile(_entry(name, size), file)
        for name, data in code_files().items():
            tar.addfile(_entry(name, len(data)), io.BytesIO(data))
        return tar.getnames()


def onnx_export(model_dir: Path) -> Path:
    """The model's ONNX export for inference.serve (made now unless cached; inference.backends checks it)."""
    from inference.backends import OnnxBackend, check_against_torch, export_onnx  # torch, only when asked for
    from inference.handler import model_fn

    model = model_fn(str(model_dir))
    try:
        path = export_onnx(model, model_dir)
        check_against_torch(OnnxBackend(path), model)
    except Exception as error:  # noqa: BLE001 - the exporter fails in many types; each is the user's to hear
        raise ConfigError(f"--onnx: the ONNX export failed ({error})") from None
    return path


def _entry(name: str, size: int) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.size, entry.mode = size, 0o644
    return entry


def package(model_dir: str | Path | None, s3_uri: str | None = None, region: str | None = None,
            bucket: str | None = None, onnx: bool = False) -> str:
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
        build_tarball(tarball, Path(model_dir) if model_dir else None, onnx)
        if not s3_uri:
            with tarball.open("rb") as file:
                digest = hashlib.file_digest(file, "sha256").hexdigest()[:12]
            name = f"models/{Path(model_dir).resolve().name}" if model_dir else "code"
            s3_uri = f"s3://{bucket}/bincount/{name}-{digest}/model.tar.gz"
        elif not s3_uri.endswith(".tar.gz"):
            s3_uri = s3_uri.rstrip("/") + "/model.tar.gz"
        return storage.upload(tarball, s3_uri, region)


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
    role, region, bucket = account(args.role, args.region, args.bucket)
    return replace(args, role=role, region=region, bucket=bucket)


def build_model(args: ModelArguments, instance_type: str | None, name: str, predictor_cls: type | None = None) -> Any:
    """A HuggingFaceModel running our handler on the weights in S3 or from the Hub (args checked by check_model)."""
    from sagemaker.huggingface import HuggingFaceModel

    model_data = args.model_data or package(None, region=args.region, bucket=args.bucket)
    return HuggingFaceModel(
        name=name, model_data=model_data, role=args.role, env=endpoint_env(args, is_gpu(instance_type)),
        image_uri=args.image_uri or container_image(args.region, instance_type), model_server_workers=args.workers,
        predictor_cls=predictor_cls, sagemaker_session=session(args.region, args.bucket))
