"""Container images, pins and code bundles of every SageMaker job: one place to move versions forward.

Jobs run our own code from a bundle of the project's packages with a ``requirements.txt`` derived from the root pins
(one source of truth for versions, locally and in the containers); the container keeps its own (CUDA) torch.
"""

from __future__ import annotations

import logging
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cloud.s3 import parse_s3_uri
from cloud.sagemaker.session import ROOT, ConfigError

logger = logging.getLogger(__name__)

# The newest containers SageMaker SDK 2.257.7 knows: move them forward here (or pass --image_uri).
TRAINING_CONTAINER = {"framework": "huggingface", "version": "4.56.2", "base_framework_version": "pytorch2.8.0",
                      "py_version": "py312"}
PROCESSING_CONTAINER = {"framework": "pytorch", "version": "2.8.0", "py_version": "py312"}  # CPU builds too
# Endpoints and transform jobs: the newest Hugging Face inference container SDK v2 knows.
TRANSFORMERS_VERSION = "4.51.3"
PYTORCH_VERSION = "2.6.0"
PY_VERSION = "py312"
# What train.run and data.build need, pinned like ours; never torch: each container keeps its own (CUDA) build.


PROCESSING_REQUIREMENTS = ("transformers", "datasets", "huggingface-hub", "pillow", "numpy", "opencv-python-headless",
                           "matplotlib", "tqdm", "boto3", "botocore", "urllib3")

# Training jobs run data/ too: --synthetic_pretrain generates and builds its bins inside the job.
TRAINING_REQUIREMENTS = (*PROCESSING_REQUIREMENTS, "evaluate", "accelerate", "safetensors")


# The project code each job runs: the label rule and CLI convention travel with train/ and data/ (see core/).
PROCESSING_CODE = ("data", "cloud/__init__.py", "cloud/s3.py", "core")

TRAINING_CODE = ("train", *PROCESSING_CODE)


def is_gpu(instance_type: str | None) -> bool:
    """Whether an instance type has NVIDIA GPUs (ml.g*, ml.p*); None (serverless) runs on CPU."""
    return instance_type is not None and instance_type.split(".")[1].startswith(("g", "p"))


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


def container_image(region: str, instance_type: str | None = None) -> str:
    """The Hugging Face inference container for an instance type (None: serverless, which runs on CPU)."""
    from sagemaker import image_uris
    from sagemaker.serverless import ServerlessInferenceConfig

    serverless = ServerlessInferenceConfig() if instance_type is None else None
    return image_uris.retrieve("huggingface", region, version=TRANSFORMERS_VERSION,
                               base_framework_version=f"pytorch{PYTORCH_VERSION}", py_version=PY_VERSION,
                               instance_type=instance_type, serverless_inference_config=serverless,
                               image_scope="inference")


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


def upload_code(sagemaker_session, uri: str, packages: tuple[str, ...], requirements: tuple[str, ...]) -> None:
    """Pack the project's ``packages`` with their pinned requirements.txt and upload the tarball to ``uri``."""
    bucket, key = parse_s3_uri(uri)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = pack_bundle(Path(tmp) / "sourcedir.tar.gz", packages, requirements)
        sagemaker_session.upload_data(str(tarball), bucket, key.rsplit("/", 1)[0])
    logger.info("uploaded the %s code to %s", ", ".join(packages), uri)
