"""The SageMaker launcher against moto's real HTTP server: what the training, tuning and processing jobs are created
with (read back with Describe*), the code bundle, the containers' contracts run for real on this machine (training
with and without torchrun, resume from the checkpoint folder, the multi-host dataset build), dry runs and bad input.

moto stores what it needs of a job but not everything: it answers DescribeTrainingJob with its own canned metric
definitions, drops a job's environment and a processing job's instance settings, and reports a canned best job for a
tuning job. Those settings are checked in the exact request instead, as --dry_run prints it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from contextlib import redirect_stdout
from pathlib import Path

import boto3
import pytest
from datasets import Image, load_from_disk
from packaging.requirements import Requirement

from cloud import s3
from cloud.local import FAKE_ACCOUNT_ROLE, aws_env, free_port
from cloud.sagemaker.containers import stage_bundle
from train.launch_sagemaker import (
    PROCESSING_CODE,
    PROCESSING_REQUIREMENTS,
    TRAINING_CODE,
    TRAINING_REQUIREMENTS,
    DataChannels,
    SageMakerArguments,
    TrainingJobArguments,
    describe,
    describe_tuning,
    estimator,
    hyperparameters,
    main,
    train,
)
from train.logs import metric_definitions

BUCKET = "bincount-launch"
# train.run options of a tiny run; the model path is relative to the code folder. The last three are tuned by `tune`.
TINY = ["--model_name_or_path", "train/configs/tiny-resnet", "--max_train_samples", "32", "--max_eval_samples", "16",
        "--logging_steps", "2", "--dataloader_num_workers", "0", "--seed", "7", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "8", "--learning_rate", "2e-3"]
UNTUNED = TINY[:-6]
TOKEN = "hf_launcher_secret_token"


@pytest.fixture(scope="module")
def cloud(moto_endpoint):
    """moto as this module's AWS, with the launcher's role and bucket in the environment; yields S3 and SageMaker."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**aws_env(moto_endpoint), "SAGEMAKER_ROLE": FAKE_ACCOUNT_ROLE,
                           "SAGEMAKER_BUCKET": BUCKET}.items():
            env.setenv(key, value)
        env.delenv("HF_TOKEN", raising=False)
        client = boto3.client("s3")
        if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
            client.create_bucket(Bucket=BUCKET)
        yield {"s3": client, "sagemaker": boto3.client("sagemaker")}


@pytest.fixture(scope="module")
def spot_job(cloud, tiny_dataset) -> dict:
    """A spot training job launched from a notebook-style call, uploading the local dataset: its description."""
    model = train(SageMakerArguments(tags=["project=bins"]),
                  TrainingJobArguments(distributed=False, spot=True, max_run=3600),
                  DataChannels(dataset_dir=str(tiny_dataset)), TINY, wait=False)
    return cloud["sagemaker"].describe_training_job(TrainingJobName=model.latest_training_job.name)


@pytest.fixture(scope="module")
def distributed_job(cloud, spot_job, tiny_dataset) -> dict:
    """A two-instance GPU job launched from the command line, on the dataset the spot job uploaded: its description."""
    uploaded = f"s3://{BUCKET}/bincount/datasets/{tiny_dataset.name}"
    with redirect_stdout(io.StringIO()) as out:  # waits, as by default: moto completes jobs at once
        assert main(["train", "--instance_type", "ml.g5.12xlarge", "--instance_count", "2", "--dataset_s3", uploaded,
                     "--", *TINY]) == 0
    name = re.search(r"training job (\S+): Completed", out.getvalue())[1]
    return cloud["sagemaker"].describe_training_job(TrainingJobName=name)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def decoded(hyperparameters: dict[str, str]) -> dict[str, object]:
    """Hyperparameters as the training toolkit reads them: every value JSON-decoded when it can be."""
    def decode(value: str) -> object:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return {key: decode(value) for key, value in hyperparameters.items()}


def unpack(cloud, uri: str, into: Path) -> Path:
    bucket, key = s3.parse_s3_uri(uri)
    tarball = into.with_suffix(".tar.gz")
    cloud["s3"].download_file(bucket, key, str(tarball))
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")
    return into


def bare_env(**extra: str) -> dict[str, str]:
    """This environment without the repository on PYTHONPATH: code must come from the bundle alone."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**env, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **extra}


# ---- the training job -----------------------------------------------------------------------------------------------

def test_training_job_reads_back_as_launched(cloud, spot_job, tiny_dataset):
    name = spot_job["TrainingJobName"]
    image = spot_job["AlgorithmSpecification"]["TrainingImage"]
    assert image.endswith("/huggingface-pytorch-training:2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04")
    assert spot_job["ResourceConfig"] == {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 100}
    hps = decoded(spot_job["HyperParameters"])
    expected = dict(zip(TINY[::2], TINY[1::2]))
    assert {f"--{k}": v for k, v in hps.items() if not k.startswith("sagemaker_") and k != "output_dir"} == expected
    assert hps["output_dir"] == "/opt/ml/checkpoints" and hps["sagemaker_program"] == "train/run.py"
    assert "sagemaker_torch_distributed_enabled" not in hps
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in spot_job["InputDataConfig"]}
    assert channels == {split: f"s3://{BUCKET}/bincount/datasets/{tiny_dataset.name}/{split}/"
                        for split in ("train", "validation", "test")}
    for uri in channels.values():  # the local dataset was uploaded where the channels point
        bucket, prefix = s3.parse_s3_uri(uri)
        assert any(key.endswith("/state.json") for key in s3.list_keys(cloud["s3"], bucket, prefix))
    assert spot_job["EnableManagedSpotTraining"] is True
    assert spot_job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert spot_job["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/bincount/checkpoints/{name}",
                                            "LocalPath": "/opt/ml/checkpoints"}
    assert spot_job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/bincount/models"
    tags = cloud["sagemaker"].list_tags(ResourceArn=spot_job["TrainingJobArn"])["Tags"]
    assert {"Key": "project", "Value": "bins"} in tags


def test_code_bundle_in_s3_holds_the_training_package_and_our_pins(cloud, spot_job, tmp_path):
    code = unpack(cloud, decoded(spot_job["HyperParameters"])["sagemaker_submit_directory"], tmp_path / "code")
    for path in ("train/run.py", "train/args.py", "train/data.py", "train/transforms.py", "train/logs.py",
                 "train/metrics/counting/counting.py", "train/configs/tiny-resnet/config.json", "core/labels.py",
                 "core/verify.py"):
        assert (code / path).is_file(), path
    pins = dict(line.split("==") for line in (code / "requirements.txt").read_text().split())
    root_pins = dict(line.split("==") for line in (Path(__file__).parents[1] / "requirements.txt").read_text().split()
                     if "==" in line)
    assert pins == {name: root_pins[name] for name in TRAINING_REQUIREMENTS}
    assert "torch" not in pins and "sagemaker" not in pins  # the container keeps its own CUDA build of torch


@pytest.mark.parametrize("packages, requirements", [(TRAINING_CODE, TRAINING_REQUIREMENTS),
                                                    (PROCESSING_CODE, PROCESSING_REQUIREMENTS)])
def test_bundles_pin_every_library_their_code_imports(tmp_path, packages, requirements):
    bundle = stage_bundle(tmp_path, packages, requirements)
    imported = set()
    launcher_side = {bundle / "train" / "launch_sagemaker.py"}  # never run in jobs (cloud/sagemaker/ is not shipped)
    for path in set(bundle.rglob("*.py")) - launcher_side:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    project = {package.split("/")[0] for package in packages}
    third_party = imported - set(sys.stdlib_module_names) - project - {"__future__", "torch"}  # torch: built in
    provided, queue = set(), [line.split("==")[0] for line in (bundle / "requirements.txt").read_text().split()]
    while queue:  # what `pip install -r requirements.txt` brings: the pins and their dependencies
        name = re.sub(r"[-_.]+", "-", queue.pop().lower())
        if name not in provided:
            provided.add(name)
            requires = [Requirement(line) for line in importlib.metadata.requires(name) or ()]
            queue += [r.name for r in requires if r.marker is None or r.marker.evaluate({"extra": ""})]
    distributions = importlib.metadata.packages_distributions()
    missing = {module for module in third_party
               if not {re.sub(r"[-_.]+", "-", d.lower()) for d in distributions.get(module, [module])} & provided}
    assert not missing, f"imported by the bundle but not installed by its requirements.txt: {missing}"


def container_run(cloud, job: dict, root: Path) -> subprocess.CompletedProcess:
    """Run a training job the way the Hugging Face training container does, in ``root`` standing for /opt/ml.

    The code bundle is unpacked from S3 into code/, the channels are downloaded like SageMaker's File mode, the
    hyperparameters become ``--key value`` in sorted order with /opt/ml paths moved under ``root``, and the command is
    ``python train/run.py ...``, or torchrun when torch_distributed is on (two CPU processes standing in for GPUs).
    """
    hps = decoded(job["HyperParameters"])
    code = root / "code"
    if not code.is_dir():
        unpack(cloud, hps["sagemaker_submit_directory"], code)
    data = root / "input" / "data"
    for channel in job["InputDataConfig"]:
        if not (data / channel["ChannelName"]).is_dir():
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            s3.download_prefix(cloud["s3"], uri, data / channel["ChannelName"])
    user = {k: str(v).replace("/opt/ml", str(root)) for k, v in hps.items() if not k.startswith("sagemaker_")}
    args = [token for key in sorted(user) for token in (f"--{key}", user[key])]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2"] \
        if hps.get("sagemaker_torch_distributed_enabled") else [sys.executable]
    env = bare_env(SM_MODEL_DIR=str(root / "model"), SM_OUTPUT_DATA_DIR=str(root / "output" / "data"),
                   SM_HPS=json.dumps(user), SM_NUM_GPUS="0", SM_CURRENT_HOST="algo-1", SM_HOSTS='["algo-1"]',
                   SM_CHANNELS=json.dumps(sorted(c["ChannelName"] for c in job["InputDataConfig"])),
                   **{f"SM_CHANNEL_{c['ChannelName'].upper()}": str(data / c["ChannelName"])
                      for c in job["InputDataConfig"]})
    return subprocess.run([*launcher, "train/run.py", *args], cwd=code, env=env, capture_output=True, text=True,
                          timeout=600)


def test_container_contract_trains_from_the_bundle_alone_then_resumes(cloud, spot_job, tmp_path):
    first = container_run(cloud, spot_job, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    model = tmp_path / "model"
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "all_results.json"):
        assert (model / name).is_file(), name
    assert list((tmp_path / "checkpoints").glob("checkpoint-*/trainer_state.json"))

    # The metric regexes SageMaker applies to the job's log find what train.run really printed.
    found = {d["Name"]: [float(m.group(1)) for line in first.stdout.splitlines() if (m := re.search(d["Regex"], line))]
             for d in metric_definitions()}
    for name in ("loss", "train_images_per_second", "eval_loss", "eval_accuracy", "eval_rmse", "test_rmse"):
        assert found[name], f"no {name} in the log"
    results = json.loads((model / "all_results.json").read_text())
    assert found["eval_rmse"][-1] == pytest.approx(results["eval_rmse"], abs=1e-5)  # the last is the best model's

    second = container_run(cloud, spot_job, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from {tmp_path / 'checkpoints'}/checkpoint-" in second.stderr


def test_distributed_job_reads_back_as_launched(distributed_job, spot_job):
    assert distributed_job["ResourceConfig"] == {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 2,
                                                 "VolumeSizeInGB": 100}
    hps = decoded(distributed_job["HyperParameters"])
    assert hps["sagemaker_torch_distributed_enabled"] is True and hps["sagemaker_instance_type"] == "ml.g5.12xlarge"
    assert distributed_job["InputDataConfig"] == spot_job["InputDataConfig"]
    assert "EnableManagedSpotTraining" not in distributed_job or not distributed_job["EnableManagedSpotTraining"]
    assert "CheckpointConfig" not in distributed_job


@pytest.mark.slow
def test_distributed_contract_runs_under_torchrun(cloud, distributed_job, tmp_path):
    result = container_run(cloud, distributed_job, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 0 of 2" in result.stderr and "process 1 of 2" in result.stderr
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert result.stdout.count("test results") == 1  # one process reports and saves


# ---- dry run and secrets --------------------------------------------------------------------------------------------

@pytest.fixture
def unreachable(cloud, monkeypatch):
    """An endpoint nothing listens on: an upload or a create request would fail. HF_TOKEN is set."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def test_dry_run_prints_the_exact_request_and_creates_nothing(unreachable, capsys, tiny_dataset):
    private = "123456789012.dkr.ecr.us-east-1.amazonaws.com/bincount-training:pinned"
    code, out, err = run_cli(capsys, "train", "--dry_run", "--instance_type", "ml.p4d.24xlarge", "--instance_count",
                             "2", "--spot", "--dataset_dir", str(tiny_dataset), "--tags", "team=ml", "--image_uri",
                             private, "--", *TINY, "--push_to_hub", "--hub_model_id", "org/bin-counter")
    assert code == 0, err
    assert TOKEN not in out + err
    [sent] = json.loads(out)
    request = sent["request"]
    assert sent["operation"] == "CreateTrainingJob"
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions()
    assert request["AlgorithmSpecification"]["TrainingImage"] == private
    assert request["Environment"] == {"HF_TOKEN": "***"}
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert request["EnableManagedSpotTraining"] is True
    assert request["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert decoded(request["HyperParameters"])["push_to_hub"] == "True"
    assert decoded(request["HyperParameters"])["sagemaker_torch_distributed_enabled"] is True
    assert {"Key": "team", "Value": "ml"} in request["Tags"]


def test_a_hub_dataset_is_a_hyperparameter_without_channels(unreachable, capsys):
    code, out, err = run_cli(capsys, "train", "--dry_run", "--", *TINY, "--dataset", "org/abid-moderate")
    assert code == 0, err
    [sent] = json.loads(out)
    assert "InputDataConfig" not in sent["request"]
    assert decoded(sent["request"]["HyperParameters"])["dataset"] == "org/abid-moderate"


def test_processing_dry_run_shows_instances_and_masks_the_token(unreachable, capsys):
    code, out, err = run_cli(capsys, "process", "--dry_run", "--instance_count", "3", "--push_to_hub", "org/abid",
                             "--", "--unsigned")
    assert code == 0, err
    assert TOKEN not in out + err
    shards, assemble = (sent["request"] for sent in json.loads(out))
    assert shards["ProcessingResources"]["ClusterConfig"] == {"InstanceType": "ml.c5.4xlarge", "InstanceCount": 3,
                                                              "VolumeSizeInGB": 100}
    assert assemble["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    assert shards["AppSpecification"]["ContainerArguments"][-1] == "--shards_only" and "Environment" not in shards
    assert assemble["AppSpecification"]["ContainerArguments"][-2:] == ["--push_to_hub", "org/abid"]
    assert assemble["Environment"] == {"HF_TOKEN": "***"}


def test_push_sends_the_token_only_in_the_job_environment(cloud, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    settings = SageMakerArguments(), TrainingJobArguments(), DataChannels(dataset_s3="s3://data/ds")
    requests: list[dict] = []
    model, inputs = estimator(*settings, hyperparameters([*TINY, "--push_to_hub", "--hub_model_id", "org/bins"]),
                              "push-check", requests)
    model.fit(inputs, wait=False, job_name="push-check")
    [sent] = requests
    assert sent["request"]["Environment"] == {"HF_TOKEN": TOKEN}
    assert TOKEN not in json.dumps(sent["request"]["HyperParameters"])
    assert estimator(*settings, hyperparameters(TINY), "no-push", [])[0].environment is None


# ---- tuning ---------------------------------------------------------------------------------------------------------

def test_tuning_job_reads_back_and_reports_its_best_job(cloud, capsys):
    code, out, err = run_cli(capsys, "tune", "--dataset_s3", f"s3://{BUCKET}/bincount/datasets/ds", "--objective",
                             "accuracy", "--n_trials", "6", "--max_parallel_jobs", "3", "--no_early_stopping",
                             "--batch_sizes", "16", "32", "--no-wait", "--", *UNTUNED)
    assert code == 0, err
    name = re.search(r"tuning job (\S+) created", out)[1]
    tuning = cloud["sagemaker"].describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    config = tuning["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "eval_accuracy"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3}
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    ranges = {r["Name"]: r for kind in config["ParameterRanges"].values() for r in kind}
    assert ranges["learning_rate"]["ScalingType"] == "Logarithmic"
    assert float(ranges["learning_rate"]["MinValue"]) == 1e-5 and float(ranges["learning_rate"]["MaxValue"]) == 1e-2
    assert [json.loads(v) for v in ranges["per_device_train_batch_size"]["Values"]] == ["16", "32"]
    assert (ranges["num_train_epochs"]["MinValue"], ranges["num_train_epochs"]["MaxValue"]) == ("2", "10")
    assert float(ranges["weight_decay"]["MaxValue"]) == 0.1
    definition = tuning["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions()
    assert "huggingface-pytorch-training:2.8.0" in definition["AlgorithmSpecification"]["TrainingImage"]
    static = decoded(definition["StaticHyperParameters"])
    assert static["metric_for_best_model"] == "accuracy" and static["model_name_or_path"] == TINY[1]
    assert "learning_rate" not in static  # tuned, not fixed

    # moto answers with a canned best job; give it a real training job of that name so its metrics can be read.
    best = tuning["BestTrainingJob"]
    cloud["sagemaker"].create_training_job(
        TrainingJobName=best["TrainingJobName"], RoleArn=FAKE_ACCOUNT_ROLE,
        AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out"}, StoppingCondition={"MaxRuntimeInSeconds": 60},
        ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30})
    code, out, err = run_cli(capsys, "tune-report", name)
    assert code == 0, err
    objective = best["FinalHyperParameterTuningJobObjectiveMetric"]
    assert f"best job: {best['TrainingJobName']} ({objective['MetricName']} = {objective['Value']:.6g})" in out
    metrics = cloud["sagemaker"].describe_training_job(TrainingJobName=best["TrainingJobName"])["FinalMetricDataList"]
    assert "final metrics: " + " ".join(f"{m['MetricName']}={m['Value']:.6g}" for m in metrics) in out

    running = {**tuning, "HyperParameterTuningJobStatus": "InProgress",
               "TrainingJobStatusCounters": {"Completed": 0, "InProgress": 3}}
    del running["BestTrainingJob"]
    report = describe_tuning(running, None)
    assert "InProgress (0 completed, 3 in progress" in report and "no completed training job yet" in report


# ---- status ---------------------------------------------------------------------------------------------------------

def test_status_shows_state_metrics_and_a_failure_reason(cloud, capsys, spot_job):
    name = spot_job["TrainingJobName"]
    code, out, err = run_cli(capsys, "status", name)
    assert code == 0, err
    assert out.startswith(f"training job {name}: Completed")
    assert "final metrics: train:progress=100" in out  # moto's canned final metric

    failed = {**spot_job, "TrainingJobStatus": "Failed", "SecondaryStatus": "Failed",
              "FailureReason": "AlgorithmError: ExecuteUserScriptError: CUDA out of memory"}
    assert "failure reason: AlgorithmError: ExecuteUserScriptError: CUDA out of memory" in describe(failed)
    assert "model:" not in describe(failed)

    code, out, err = run_cli(capsys, "status", "no-such-job")
    assert code == 2 and err.strip() == "error: no training or processing job named 'no-such-job'"


# ---- the dataset build as Processing jobs ---------------------------------------------------------------------------

def test_processing_jobs_build_the_same_dataset_as_one_local_build(cloud, capsys, synthetic_bucket, tiny_dataset,
                                                                   tmp_path):
    s3.upload_dir(cloud["s3"], synthetic_bucket, f"s3://{BUCKET}/synthetic")
    dataset_uri = f"s3://{BUCKET}/bincount/datasets/synthetic"
    builder = ["--", "--source", f"s3://{BUCKET}/synthetic", "--shorter_side", "160", "--chunk_size", "50",
               "--num_proc", "1"]
    names = []
    for stage in ("shards", "assemble"):  # the two stages one at a time, as after a --no-wait shards stage
        code, out, err = run_cli(capsys, "process", "--stage", stage, "--instance_count", "2", "--dataset_s3",
                                 dataset_uri, "--no-wait", *builder)
        assert code == 0, err
        names += re.findall(r"processing job (\S+) created", out)
    shards_job, assemble_job = (cloud["sagemaker"].describe_processing_job(ProcessingJobName=name) for name in names)
    image = "/pytorch-training:2.8.0-cpu-py312"
    assert shards_job["AppSpecification"]["ImageUri"].endswith(image)
    assert assemble_job["AppSpecification"]["ImageUri"].endswith(image)
    [shards_output] = shards_job["ProcessingOutputConfig"]["Outputs"]
    [dataset_output] = assemble_job["ProcessingOutputConfig"]["Outputs"]
    shards_uri = shards_output["S3Output"]["S3Uri"]
    assert dataset_output["S3Output"]["S3Uri"] == dataset_uri and shards_uri == f"{dataset_uri}.shards"
    assert shards_uri in assemble_job["AppSpecification"]["ContainerArguments"]

    # Each host runs the container's command on its share, as a Processing job's hosts do; SageMaker then uploads
    # every host's output folder to the same S3 prefix, and the assembly job reads it from there.
    code_dir = unpack(cloud, shards_job["ProcessingInputs"][0]["S3Input"]["S3Uri"], tmp_path / "code")
    assert shards_job["AppSpecification"]["ContainerEntrypoint"][-1] == "data.build"  # runs python -m data.build
    hosts, running = ["algo-1", "algo-2"], []
    for host in hosts:
        config = tmp_path / host / "resourceconfig.json"
        config.parent.mkdir()
        config.write_text(json.dumps({"current_host": host, "hosts": hosts}))
        args = [str(tmp_path / host / "shards") if a == shards_output["S3Output"]["LocalPath"] else a
                for a in shards_job["AppSpecification"]["ContainerArguments"]]
        running.append(subprocess.Popen([sys.executable, "-m", "data.build", *args], cwd=code_dir, text=True,
                                        env=bare_env(PROCESSING_RESOURCE_CONFIG=str(config)),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for host, process in zip(hosts, running):
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
        s3.upload_dir(cloud["s3"], tmp_path / host / "shards", shards_uri)
    built = [sorted(p.stem for p in (tmp_path / host / "shards" / "shards").glob("*.json")) for host in hosts]
    assert built == [["000000", "000002", "000004"], ["000001", "000003"]]  # every other chunk of 5 each

    dataset = tmp_path / "dataset"
    args = [str(dataset) if a == dataset_output["S3Output"]["LocalPath"] else a
            for a in assemble_job["AppSpecification"]["ContainerArguments"]]
    result = subprocess.run([sys.executable, "-m", "data.build", *args], cwd=code_dir, capture_output=True, text=True,
                            env=bare_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    def content(path: Path) -> dict[str, list]:
        splits = load_from_disk(str(path)).cast_column("image", Image(decode=False))
        return {split: sorted(zip(d["image_id"], d["label"], (i["bytes"] for i in d["image"])))
                for split, d in splits.items()}

    assert content(dataset) == content(tiny_dataset)


# ---- bad input: one line before any API call ------------------------------------------------------------------------

@pytest.mark.parametrize("argv, env, message", [
    (["train", "--dataset_s3", "s3://data/ds"], {"SAGEMAKER_ROLE": None}, "no execution role"),
    (["train", "--role", "admin", "--dataset_s3", "s3://data/ds"], {}, "not an IAM role ARN"),
    (["train", "--dataset_s3", "s3://data/ds"], {"SAGEMAKER_BUCKET": None}, "no S3 bucket"),
    (["train", "--dataset_s3", "s3://data/ds"], {"AWS_REGION": None, "AWS_DEFAULT_REGION": None}, "no AWS region"),
    (["train", "--instance_type", "ml.x9.huge", "--dataset_s3", "s3://data/ds"], {}, "unknown instance type"),
    (["train", "--instance_type", "ml.m5.xlarge", "--dataset_s3", "s3://data/ds"], {},
     "no huggingface 4.56.2 container for ml.m5.xlarge"),
    (["train", "--dataset_s3", "bucket/ds"], {}, "--dataset_s3: not an S3 URI"),
    (["train", "--train", "s3://data/train", "--test", "http://b/test"], {}, "--test: not an S3 URI"),
    (["train", "--dataset_s3", "s3://data/ds", "--", "--learning_rat", "1e-3"], {}, "unknown train.run option"),
    (["train", "--dataset_s3", "s3://data/ds", "--", "--no_augment"], {}, "(pass --augment False)"),
    (["train", "--dataset_s3", "s3://data/ds", "--", "--hub_token", TOKEN], {}, "pass the token as HF_TOKEN"),
    (["train", "--dataset_s3", "s3://data/ds", "--", "--output_dir", "/tmp/x"], {}, "the launcher sets it"),
    (["train"], {}, "no data"),
    (["train", "--dataset_s3", "s3://data/ds", "--", "--dataset", "org/abid"], {}, "not both"),
    (["train", "--dataset_s3", "s3://data/ds", "--", "--push_to_hub", "--hub_model_id", "org/m"], {"HF_TOKEN": None},
     "needs HF_TOKEN"),
    (["train", "--dataset_s3", "s3://data/ds", "--max_wait", "100"], {}, "--max_wait is for --spot jobs"),
    (["train", "--dataset_s3", "s3://data/ds", "--instance_count", "2", "--no_distributed"], {},
     "several instances need --distributed"),
    (["train", "--dataset_s3", "s3://data/ds", "--gpus", "4"], {}, "unknown train option --gpus"),
    (["tune", "--dataset_s3", "s3://data/ds", "--", "--learning_rate", "1e-3"], {}, "--learning_rate is tuned"),
    (["process", "--", "--sorce", "s3://data"], {}, "unknown data.build option --sorce"),
    (["process", "--", "--output", "/tmp/x"], {}, "--output is set by the launcher"),
    (["process", "--no-wait"], {}, "--stage all assembles once the shards job ends"),
])
def test_bad_input_fails_with_one_line_before_any_call(capsys, monkeypatch, argv, env, message):
    for key, value in {**aws_env(f"http://127.0.0.1:{free_port()}"), "SAGEMAKER_ROLE": FAKE_ACCOUNT_ROLE,
                       "SAGEMAKER_BUCKET": BUCKET, "HF_TOKEN": TOKEN, "AWS_MAX_ATTEMPTS": "1",
                       "AWS_CONFIG_FILE": "/nonexistent", **env}.items():
        monkeypatch.delenv(key, raising=False) if value is None else monkeypatch.setenv(key, value)
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert TOKEN not in out + err
