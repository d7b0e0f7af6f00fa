"""Deployment against moto's S3 and SageMaker (a real HTTP server on 127.0.0.1): what each command creates, read back
with the Describe APIs; the model.tar.gz layout; batch transform with the container's contract reproduced; deletion;
bad settings; and, in the container stand-in, that an endpoint serving a Hub model runs our hooks.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from cloud import s3 as cloud_s3
from cloud.local import FAKE_ACCOUNT_ROLE, free_port
from cloud.sagemaker.containers import pinned
from cloud.sagemaker.session import session
from inference import deploy, handler
from inference.handler import BadRequest
from inference.serve import make_server
from tests.conftest import ROOT, hub_env, python_env
from tests.test_handler import b64, image_bytes, truncated_jpeg
from tests.test_toolkit import CONTAINER_PYTHON, RUNNER

BUCKET = "bincount-deploy-test"
REGION = "us-east-1"
CPU_IMAGE = "huggingface-pytorch-inference:2.6.0-transformers4.51.3-cpu-py312"
GPU_IMAGE = "huggingface-pytorch-inference:2.6.0-transformers4.51.3-gpu-py312"
HANDLER_FILES = sorted(["code/inference.py", "code/core/__init__.py", "code/core/cli.py", "code/core/labels.py",
                        "code/core/verify.py", "code/core/preprocess.py", "code/requirements.txt"])


@pytest.fixture
def cloud(aws, monkeypatch):
    """moto with a bucket, and the role and bucket a user sets once in the environment."""
    monkeypatch.setenv("SAGEMAKER_ROLE", FAKE_ACCOUNT_ROLE)
    monkeypatch.setenv("SAGEMAKER_BUCKET", BUCKET)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture
def sagemaker(cloud):
    return boto3.client("sagemaker", region_name=REGION)


@pytest.fixture(scope="module")
def training_output(tiny_model_dir, tmp_path_factory) -> Path:
    """A folder as train.run leaves it: the final model beside checkpoints, logs and reports."""
    out = tmp_path_factory.mktemp("train") / "bincount-resnet"
    shutil.copytree(tiny_model_dir, out)
    (out / "checkpoint-10").mkdir()
    for name in ("model.safetensors", "config.json", "optimizer.pt", "trainer_state.json"):
        (out / "checkpoint-10" / name).write_bytes(b"checkpoint")
    (out / "runs").mkdir()
    (out / "runs" / "events.out.tfevents.1").write_bytes(b"events")
    for name in ("training_args.bin", "all_results.json", "run_args.json", "results.md", "confusion_matrix.png"):
        (out / name).write_bytes(b"report")
    (out / "README.md").write_text("# bincount-resnet\n")
    return out


def tarball_members(s3, uri: str) -> dict[str, bytes]:
    bucket, key = cloud_s3.parse_s3_uri(uri)
    with tarfile.open(fileobj=io.BytesIO(cloud_s3.get(s3, bucket, key)), mode="r:gz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


def cli(*argv: str) -> int:
    return deploy.main(list(argv))


def described(sagemaker, endpoint_name: str) -> tuple[dict, dict, dict]:
    """DescribeEndpoint, DescribeEndpointConfig and DescribeModel (its one variant's) of an endpoint."""
    endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    return endpoint, config, sagemaker.describe_model(ModelName=variant["ModelName"])


# package

def test_package_uploads_the_final_model_and_our_handler_and_nothing_from_training(cloud, training_output):
    uri = deploy.package(training_output)
    members = tarball_members(cloud, uri)
    assert sorted(members) == sorted(["config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                                      *HANDLER_FILES])
    assert members["model.safetensors"] == (training_output / "model.safetensors").read_bytes()
    assert members["code/inference.py"] == (ROOT / "inference" / "handler.py").read_bytes()
    assert members["code/requirements.txt"].decode().splitlines() == pinned(["pillow"])
    assert uri.startswith(f"s3://{BUCKET}/bincount/models/bincount-resnet-") and uri.endswith("/model.tar.gz")
    assert deploy.package(training_output) == uri  # same contents, same artifact


def test_package_cli_uploads_where_asked(cloud, training_output, capsys):
    assert cli("package", "--model_dir", str(training_output), "--s3_uri", f"s3://{BUCKET}/chosen/") == 0
    assert capsys.readouterr().out.strip() == f"uploaded s3://{BUCKET}/chosen/model.tar.gz"
    assert "model.safetensors" in tarball_members(cloud, f"s3://{BUCKET}/chosen/model.tar.gz")


# deploy

@pytest.fixture
def model_data(cloud, training_output) -> str:
    return deploy.package(training_output)


@pytest.mark.parametrize("endpoint, variant, image, env", [
    (deploy.EndpointArguments("bincount-cpu", instance_count=2),
     {"InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 2}, CPU_IMAGE, {"OMP_NUM_THREADS": "1"}),
    (deploy.EndpointArguments("bincount-gpu", instance_type="ml.g4dn.xlarge"),
     {"InstanceType": "ml.g4dn.xlarge", "InitialInstanceCount": 1}, GPU_IMAGE, {"OMP_NUM_THREADS": None}),
    (deploy.EndpointArguments("bincount-serverless", serverless_memory_mb=2048, serverless_max_concurrency=3),
     {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 3}}, CPU_IMAGE, {"OMP_NUM_THREADS": "1"}),
    (deploy.EndpointArguments("bincount-async", async_output_path=f"s3://{BUCKET}/async-answers/"),
     {"InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1}, CPU_IMAGE, {"OMP_NUM_THREADS": "1"}),
], ids=["cpu", "gpu", "serverless", "async"])
def test_deploy_creates_an_endpoint_running_our_handler(sagemaker, model_data, endpoint, variant, image, env):
    predictor = deploy.deploy(deploy.ModelArguments(model_data=model_data, mismatch_threshold=0.05),
                              replace(endpoint, wait=False))
    assert predictor.endpoint_name == endpoint.endpoint_name
    assert isinstance(getattr(predictor, "predictor", predictor), deploy.BinCountPredictor)  # async wraps it

    described_endpoint, config, model = described(sagemaker, endpoint.endpoint_name)
    assert described_endpoint["EndpointStatus"] == "InService"
    assert {key: config["ProductionVariants"][0].get(key) for key in variant} == variant
    if endpoint.async_output_path:
        assert config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == endpoint.async_output_path
    container = model["PrimaryContainer"]
    assert image in container["Image"] and container["Image"] == deploy.container_image(
        REGION, variant.get("InstanceType"))
    assert container["ModelDataUrl"] == model_data
    assert model["ExecutionRoleArn"] == FAKE_ACCOUNT_ROLE
    # the toolkit imports code/inference.py only when SAGEMAKER_PROGRAM names it (the SDK would set it to "")
    assert container["Environment"]["HF_TASK"] == "image-classification"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["BINCOUNT_MISMATCH_THRESHOLD"] == "0.05"
    assert "BINCOUNT_MATCH_THRESHOLD" not in container["Environment"]
    assert {key: container["Environment"].get(key) for key in env} == env


def test_hub_model_runs_our_handler_from_a_code_only_model_tarball(sagemaker, cloud):
    assert cli("deploy", "--endpoint_name", "bincount-hub", "--hub_model_id", "user/bincount", "--hub_revision",
               "v1", "--image_uri", "123456789012.dkr.ecr.us-east-1.amazonaws.com/custom:1", "--wait", "false") == 0
    _, _, model = described(sagemaker, "bincount-hub")
    container = model["PrimaryContainer"]
    assert container["Image"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/custom:1"
    assert container["Environment"]["HF_MODEL_ID"] == "user/bincount"
    assert container["Environment"]["HF_MODEL_REVISION"] == "v1"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    members = tarball_members(cloud, container["ModelDataUrl"])
    assert sorted(members) == HANDLER_FILES
    assert members["code/inference.py"] == (ROOT / "inference" / "handler.py").read_bytes()


@pytest.fixture
def runtime(tiny_model_dir, monkeypatch):
    """The local server stands in for SageMaker runtime's InvokeEndpoint (POST /endpoints/<name>/invocations), since
    moto's server cannot take binary request bodies (it decodes every body as UTF-8 and answers 500)."""
    server = make_server(tiny_model_dir, port=0, backend="torch")
    server.seen, app = [], server.app

    async def record(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            server.seen.append((scope["path"], headers[b"content-type"].decode(), headers[b"accept"].decode()))
        await app(scope, receive, send)

    server.app = record
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()
    server.server_close()


def test_predictor_sends_each_image_with_its_content_type_and_decodes_json(aws, runtime, tmp_path):
    predictor = deploy.BinCountPredictor("bincount-predictor", session(REGION, BUCKET))
    png = tmp_path / "bin.jpg"  # a PNG whatever its name says: the content type comes from the image itself
    png.write_bytes(image_bytes("PNG", size=(96, 96)))

    answers = [predictor.count(png), predictor.count(image_bytes())]
    assert runtime.seen == [("/endpoints/bincount-predictor/invocations", content_type, "application/json")
                            for content_type in ("image/png", "image/jpeg")]
    for answer, body, content_type in zip(answers, [png.read_bytes(), image_bytes()], ["image/png", "image/jpeg"]):
        local = handler.predict(runtime.model, handler.parse_request(body, content_type, handler.Settings()))
        assert answer["probabilities"] == pytest.approx(local["probabilities"], abs=1e-6)


@pytest.mark.parametrize("format, content_type", [("JPEG", "image/jpeg"), ("PNG", "image/png"),
                                                  ("WEBP", "image/webp"), ("TIFF", "image/tiff")])
def test_image_content_type_comes_from_the_image_header(format, content_type):
    assert deploy.image_content_type(image_bytes(format, size=(32, 32))) == content_type


def test_image_content_type_refuses_what_is_not_an_image():
    with pytest.raises(ValueError, match="not an image"):
        deploy.image_content_type(b"%PDF-1.7")


# batch transform

def run_transform_job(sagemaker, s3, job_name: str, work: Path) -> None:
    """What SageMaker's batch transform does for a SingleRecord job without splitting, which moto does not run: the
    container starts from the model's model.tar.gz and environment, each object under the input prefix is one
    request with the job's content type and accept, and each answer is written to ``<output path>/<key>.out``
    (key relative to the input prefix); a record the container refuses (4xx) writes nothing."""
    job = sagemaker.describe_transform_job(TransformJobName=job_name)
    container = sagemaker.describe_model(ModelName=job["ModelName"])["PrimaryContainer"]
    model_dir = work / "opt-ml-model"
    bucket, key = cloud_s3.parse_s3_uri(container["ModelDataUrl"])
    with tarfile.open(fileobj=io.BytesIO(cloud_s3.get(s3, bucket, key)), mode="r:gz") as tar:
        tar.extractall(model_dir, filter="data")
    model = handler.model_fn(str(model_dir))
    in_bucket, in_prefix = cloud_s3.parse_s3_uri(job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
    out_bucket, out_prefix = cloud_s3.parse_s3_uri(job["TransformOutput"]["S3OutputPath"])
    for key in cloud_s3.list_keys(s3, in_bucket, in_prefix):
        body = cloud_s3.get(s3, in_bucket, key)
        try:
            data = handler.input_fn(body, job["TransformInput"]["ContentType"])
            answer = handler.output_fn(handler.predict_fn(data, model), job["TransformOutput"]["Accept"])
        except BadRequest:
            continue
        s3.put_object(Bucket=out_bucket, Key=out_prefix + key[len(in_prefix):] + ".out", Body=answer.encode())


def test_batch_transform_job_and_its_collected_results(sagemaker, cloud, model_data, tmp_path, capsys):
    bodies = {"00001.jpg": image_bytes(seed=1), "00121.jpg": truncated_jpeg(), "121.jpg": image_bytes(seed=2),
              "aisle-3/00007.jpg": image_bytes(seed=3)}
    for name, body in bodies.items():
        cloud.put_object(Bucket=BUCKET, Key=f"bin-images/{name}", Body=body)
    job_name = deploy.batch_transform(
        deploy.ModelArguments(model_data=model_data),
        deploy.TransformArguments(f"s3://{BUCKET}/bin-images", f"s3://{BUCKET}/counts", instance_count=2,
                                  job_name="bincount-transform", wait=False))

    job = sagemaker.describe_transform_job(TransformJobName=job_name)
    assert job["BatchStrategy"] == "SingleRecord"
    assert job["TransformInput"]["ContentType"] == "image/jpeg"
    assert job["TransformInput"].get("SplitType", "None") == "None"
    assert job["TransformInput"]["DataSource"]["S3DataSource"] == {"S3DataType": "S3Prefix",
                                                                   "S3Uri": f"s3://{BUCKET}/bin-images/"}
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/counts/"
    assert job["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2}
    container = sagemaker.describe_model(ModelName=job["ModelName"])["PrimaryContainer"]
    assert container["ModelDataUrl"] == model_data and container["Environment"]["HF_TASK"] == "image-classification"

    run_transform_job(sagemaker, cloud, job_name, tmp_path)
    results = tmp_path / "counts.csv"
    assert cli("collect", "--input_uri", f"s3://{BUCKET}/bin-images/", "--output_uri", f"s3://{BUCKET}/counts/",
               "--results", str(results)) == 0
    rows = list(csv.DictReader(results.open()))
    assert [row["id"] for row in rows] == ["00001", "00121", "121", "00007"]  # input order; ids stay strings
    assert [row["path"] for row in rows] == [f"s3://{BUCKET}/bin-images/{name}" for name in bodies]
    assert rows[1]["error"] == deploy.NO_ANSWER and rows[1]["count"] == ""
    for row in (rows[0], rows[2], rows[3]):
        answer = json.loads(cloud_s3.get(cloud, BUCKET, f"counts/{row['path'].split('bin-images/')[1]}.out"))
        assert row["error"] == "" and int(row["count"]) == answer["count"]
        assert float(row["expected_count"]) == pytest.approx(answer["expected_count"])
        assert [float(row[f"p_{label}"]) for label in answer["probabilities"]] == pytest.approx(
            list(answer["probabilities"].values()))
    assert "4 images: 3 counted, 1 errors" in capsys.readouterr().err


# delete

def test_deploy_then_delete_from_the_command_line(sagemaker, model_data, capsys):
    assert cli("deploy", "--endpoint_name", "bincount-cli", "--model_data", model_data, "--cpu_threads", "4",
               "--workers", "1", "--wait", "false") == 0
    assert capsys.readouterr().out.strip() == "endpoint bincount-cli creating"
    _, _, model = described(sagemaker, "bincount-cli")
    environment = model["PrimaryContainer"]["Environment"]
    assert environment["OMP_NUM_THREADS"] == "4" and environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"

    assert cli("delete", "--endpoint_name", "bincount-cli") == 0
    assert capsys.readouterr().out.strip() == ("deleted endpoint bincount-cli, endpoint config bincount-cli, "
                                               f"model {model['ModelName']}")
    for call, argument in [(sagemaker.describe_endpoint, {"EndpointName": "bincount-cli"}),
                           (sagemaker.describe_endpoint_config, {"EndpointConfigName": "bincount-cli"}),
                           (sagemaker.describe_model, {"ModelName": model["ModelName"]})]:
        with pytest.raises(ClientError, match="Could not find"):
            call(**argument)
    assert cli("delete", "--endpoint_name", "bincount-cli") == 2
    assert "Could not find endpoint" in capsys.readouterr().err


# bad settings: one line, before any API call

@pytest.fixture
def unreachable(monkeypatch):
    """AWS pointed at a port nobody listens on: an API call would end in 'Could not connect', not the expected line."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
                        "SAGEMAKER_ROLE": FAKE_ACCOUNT_ROLE, "SAGEMAKER_BUCKET": BUCKET,
                        "AWS_CONFIG_FILE": "/nonexistent/aws-config"}.items():
        monkeypatch.setenv(name, value)


MODEL_DATA = f"s3://{BUCKET}/m/model.tar.gz"


@pytest.mark.parametrize("argv, unset, message", [
    (["deploy", "--endpoint_name", "e", "--model_data", MODEL_DATA], ["SAGEMAKER_ROLE"], "no execution role"),
    (["deploy", "--endpoint_name", "e", "--model_data", MODEL_DATA, "--role", "admin"], [], "not an IAM role ARN"),
    (["deploy", "--endpoint_name", "e", "--model_data", MODEL_DATA], ["AWS_REGION", "AWS_DEFAULT_REGION"],
     "no AWS region"),
    (["deploy", "--endpoint_name", "e", "--model_data", MODEL_DATA], ["SAGEMAKER_BUCKET"], "no S3 bucket"),
    (["deploy", "--endpoint_name", "e", "--model_data", MODEL_DATA, "--instance_type", "ml.x9.huge"], [],
     "unknown instance type 'ml.x9.huge'"),
    (["deploy", "--endpoint_name", "e", "--model_data", MODEL_DATA, "--instance_type", "ml.inf2.xlarge"], [],
     "Neuron instance"),
    (["deploy", "--endpoint_name", "e", "--model_data", "s3:/bincount/model.tar.gz"], [],
     "--model_data: not an S3 URI"),
    (["deploy", "--endpoint_name", "e"], [], "give one of --model_data"),
    (["deploy", "--endpoint_name", "e", "--model_data", MODEL_DATA, "--serverless_memory_mb", "3000"], [],
     "--serverless_memory_mb must be"),
    (["deploy", "--endpoint_name", "e", "--model_data", MODEL_DATA, "--match_threshold", "0.05"], [],
     "mismatch_threshold (0.1) < match_threshold (0.05)"),
    (["deploy", "--endpoint_name", "under_score", "--model_data", MODEL_DATA], [], "invalid endpoint name"),
    (["batch-transform", "--model_data", MODEL_DATA, "--input_uri", "bincount/images", "--output_uri",
      f"s3://{BUCKET}/o/"], [], "--input_uri: not an S3 URI"),
    (["batch-transform", "--model_data", MODEL_DATA, "--input_uri", f"s3://{BUCKET}/i/", "--output_uri",
      f"s3://{BUCKET}/o/", "--results", "counts.xlsx"], [], "use .csv or .jsonl"),
    (["package", "--model_dir", "{empty}"], [], "no weights in"),
    (["package", "--model_dir", "{missing}"], [], "does not exist"),
])
def test_bad_settings_fail_with_one_line_before_any_api_call(unreachable, monkeypatch, capsys, tmp_path, argv, unset,
                                                             message):
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    argv = [arg.format(empty=tmp_path / "empty", missing=tmp_path / "missing") for arg in argv]
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_cli_error_is_one_line_on_stderr_without_traceback(unreachable):
    run = subprocess.run([sys.executable, "-m", "inference.deploy", "deploy", "--endpoint_name", "e",
                          "--model_data", "bincount/model.tar.gz"], cwd=ROOT, env=python_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["error: --model_data: not an S3 URI: 'bincount/model.tar.gz' "
                                       "(expected s3://bucket[/prefix])"]


# the endpoint of a Hub model, in the container stand-in

CONTAINER = '''
import json, os, sys
from sagemaker_inference.environment import code_dir
from sagemaker_huggingface_inference_toolkit.transformers_utils import _load_model_from_hub

# the container's start-up with HF_MODEL_ID (mms_model_server.start_model_server): download the repository, and put
# /opt/ml/model/code on the PYTHONPATH the model server's workers inherit (here: this process's path)
model_dir = _load_model_from_hub(os.environ["HF_MODEL_ID"], os.path.join(os.getcwd(), ".sagemaker/mms/models"),
                                 os.environ.get("HF_MODEL_REVISION"))
json.dump({"model_dir": model_dir, "code_dir": code_dir}, open("paths.json", "w"))
sys.path.insert(1, code_dir)
sys.argv[1:] = [model_dir, "requests.json", "answers.json"]
''' + RUNNER


def test_an_endpoint_serving_a_hub_model_answers_with_our_hooks(hub, tiny_model_dir, tmp_path):
    """The environment and code-only model data deploy gives a Hub model, unpacked where SageMaker puts them, in the
    real toolkit. The toolkit's start-up module goes on to launch the Java model server, which the tests do not run,
    so CONTAINER takes that module's two steps for HF_MODEL_ID; the worker is then loaded and asked as in
    test_toolkit."""
    if not CONTAINER_PYTHON.exists():
        pytest.skip(f"no container stand-in at {CONTAINER_PYTHON} (make venv creates it)")
    push = ("import sys; from huggingface_hub import HfApi; api = HfApi(); api.create_repo(sys.argv[1]); "
            "api.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])")
    subprocess.run([sys.executable, "-c", push, "user/bincount-hub", str(tiny_model_dir)], check=True, timeout=120,
                   env=hub_env(hub.endpoint, tmp_path / "hf-home-user"), capture_output=True)

    base, work = tmp_path / "opt-ml", tmp_path / "work"
    deploy.build_tarball(tmp_path / "model.tar.gz")
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        tar.extractall(base / "model", filter="data")
    environment = deploy.endpoint_env(deploy.ModelArguments(hub_model_id="user/bincount-hub"), gpu=False)
    env = hub_env(hub.endpoint, tmp_path / "hf-home-container", **environment, SAGEMAKER_BASE_DIR=str(base))
    env.pop("PYTHONPATH")  # the project stays out of the container
    work.mkdir()
    (work / "container.py").write_text(CONTAINER)
    request = {"headers": {"Content-Type": "image/jpeg", "Accept": "application/json"}, "body": b64(image_bytes())}
    (work / "requests.json").write_text(json.dumps([request]))
    run = subprocess.run([str(CONTAINER_PYTHON), "container.py"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    paths = json.loads((work / "paths.json").read_text())
    assert paths["code_dir"] == os.fspath(base / "model" / "code")
    assert not (Path(paths["model_dir"]) / "code").exists()  # so the hooks can only come from model.tar.gz
    (answer,) = json.loads((work / "answers.json").read_text())
    assert answer["status"] == 200, answer
    result = json.loads(answer["body"])  # the toolkit's own pipeline would answer a top-5 list of {label, score}
    assert list(result["probabilities"]) == [str(i) for i in range(6)] and "expected_count" in result
    local = handler.output_fn(handler.predict_fn(handler.input_fn(image_bytes(), "image/jpeg"),
                                                 handler.model_fn(str(tiny_model_dir))), None)
    assert result["probabilities"] == pytest.approx(json.loads(local)["probabilities"], abs=1e-4)
