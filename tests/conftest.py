"""Shared fixtures: real local stand-ins (moto's server, the ABID sample) and tiny models built from config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.local import aws_env, moto_server

ROOT = Path(__file__).resolve().parents[1]
ABID_SAMPLE = ROOT.parent / "shared" / "abid-sample"
ABID_REAL = ROOT.parent / "shared" / "abid-real"
TINY_CONFIGS = ROOT / "train" / "configs"

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Test processes already run side by side, one per core: a second thread in each (and in the entry points they
    # start, which inherit this) only makes them wait on each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def python_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses that run this project's entry points the way a user does."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}
    return env


def train_args(dataset: Path, out: Path, arch: str = "tiny-resnet", *extra: str) -> list[str]:
    """train.run's options for a quick run of a tiny model from config on ``dataset``; ``extra`` adds or overrides."""
    return ["--dataset", str(dataset), "--model_name_or_path", str(TINY_CONFIGS / arch), "--output_dir", str(out),
            "--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--learning_rate", "2e-3",
            "--dataloader_num_workers", "1", "--max_train_samples", "96", "--max_eval_samples", "32",
            "--logging_steps", "2", "--seed", "7", *extra]


def run_train(args: list[str], env: dict | None = None, launcher: list[str] | None = None,
              timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m train.run`` (or under ``launcher``) as a user runs it, its output captured."""
    command = (launcher or [sys.executable, "-m"]) + ["train.run", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env or python_env())


HUB_TOKEN = "hf_local_test_token"


def hub_env(endpoint: str, home: Path, token: str | None = HUB_TOKEN, **extra: str) -> dict[str, str]:
    """Subprocess environment that points huggingface_hub (read at import) at a local Hub, with its own HF_HOME."""
    env = python_env(HF_ENDPOINT=endpoint, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_HOME=str(home), **extra)
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return env


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """A local Hub-compatible server on 127.0.0.1 (tests/hub_server.py); ``hub.endpoint``, ``hub.tokens``."""
    from tests.hub_server import HubServer

    with HubServer(tmp_path_factory.mktemp("hub")) as server:
        yield server


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy shared CPU waiting for a second one costs far more."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def abid_sample() -> Path:
    """The real ABID images and metadata beside the checkout; tests skip (with the reason) when it is absent."""
    if not (ABID_SAMPLE / "bin-images").is_dir():
        pytest.skip(f"real ABID sample not found at {ABID_SAMPLE}")
    return ABID_SAMPLE


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> str:
    """One moto_server process on 127.0.0.1 for the whole session (S3 + SageMaker APIs)."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with moto_server(log_path=str(log)) as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint, monkeypatch) -> str:
    """Point boto3 (and the SageMaker SDK) at the moto server for one test; returns the endpoint."""
    for key, value in aws_env(moto_endpoint).items():
        monkeypatch.setenv(key, value)
    return moto_endpoint


def make_tiny_model(out: Path, arch: str = "tiny-resnet", labels: list[str] | None = None, seed: int = 0) -> Path:
    """Save a randomly initialised model + processor from a shipped tiny config, with count labels."""
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    labels = labels or [str(i) for i in range(6)]
    config = AutoConfig.from_pretrained(TINY_CONFIGS / arch, num_labels=len(labels),
                                        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(seed)
    model = AutoModelForImageClassification.from_config(config)
    model.save_pretrained(out)
    AutoImageProcessor.from_pretrained(TINY_CONFIGS / arch).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny ResNet counting model folder (random weights, labels "0".."5"), as train.run would save it."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def synthetic_bucket(tmp_path_factory) -> Path:
    """A small synthetic ABID-layout bucket (bin-images/ + metadata/), the project's embedded default data."""
    from data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic-bucket")
    generate(root, num_images=240, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(synthetic_bucket, tmp_path_factory) -> Path:
    """The synthetic bucket built by data.build into a DatasetDict folder (train/validation/test, labels "0".."5")."""
    from data.build import main as build

    out = tmp_path_factory.mktemp("tiny-dataset") / "ds"
    assert build(["--source", str(synthetic_bucket), "--output", str(out), "--shorter_side", "160",
                  "--num_proc", "1"]) == 0
    return out
