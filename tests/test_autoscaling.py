"""Endpoints as production runs them, against moto's server: autoscaling (the scalable target and its target-tracking
policy, read back) and a package that ships its ONNX export."""

from __future__ import annotations

import json

import boto3
import pytest

from cloud.sagemaker import autoscaling
from cloud.sagemaker.autoscaling import Autoscale
from core.cli import UserError
from tests import test_deploy
from tests.test_deploy import cli

# test_deploy's fixtures: moto with a bucket and role, its SageMaker client, a training output folder, its package
cloud, sagemaker, training_output, model_data = (test_deploy.cloud, test_deploy.sagemaker,
                                                 test_deploy.training_output, test_deploy.model_data)

REGION = "us-east-1"


def targets_of(client, endpoint: str) -> list[dict]:
    """The scalable targets of one endpoint (moto is shared by the session: other tests' targets may be listed)."""
    return [target for target in client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
            if target["ResourceId"].startswith(f"endpoint/{endpoint}/")]


@pytest.fixture
def client(aws):
    return boto3.client("application-autoscaling", region_name=REGION)


def test_target_tracking_on_invocations_per_instance_is_registered_read_back_and_removed(client):
    autoscale = Autoscale.parse("1:4", 1200)
    policy = autoscaling.enable(client, "bins-live", autoscale)
    assert policy["PolicyARN"]
    state = autoscaling.describe(client, "bins-live")
    assert state == {"resource_id": "endpoint/bins-live/variant/AllTraffic", "min_instances": 1, "max_instances": 4,
                     "policies": [autoscaling.POLICY], "target_invocations": 1200.0,
                     "metric": "SageMakerVariantInvocationsPerInstance", "scale_in_cooldown_s": 300,
                     "scale_out_cooldown_s": 60}
    target = targets_of(client, "bins-live")
    assert [(t["ResourceId"], t["ScalableDimension"]) for t in target] == [
        ("endpoint/bins-live/variant/AllTraffic", "sagemaker:variant:DesiredInstanceCount")]

    autoscaling.enable(client, "bins-live", Autoscale.parse("2:8", 600))  # again: updated in place
    assert autoscaling.describe(client, "bins-live")["max_instances"] == 8

    assert autoscaling.disable(client, "bins-live") == [f"scaling policy {autoscaling.POLICY}",
                                                        "scalable target endpoint/bins-live/variant/AllTraffic"]
    assert autoscaling.describe(client, "bins-live") is None
    assert autoscaling.disable(client, "bins-live") == []  # nothing left: not an error


@pytest.mark.parametrize("text, target, message", [
    ("4", 100, "MIN:MAX"), ("a:b", 100, "MIN:MAX"), ("3:1", 100, "MIN <= MAX"), ("0:2", 100, "MIN <= MAX"),
    ("1:2", None, "--target_invocations"), ("1:2", 0, "--target_invocations"),
])
def test_bad_autoscale_options_are_user_errors(text, target, message):
    with pytest.raises(UserError, match=message):
        Autoscale.parse(text, target)


def test_deploy_autoscale_registers_the_variant_status_shows_it_and_delete_removes_it(sagemaker, model_data, client,
                                                                                     capsys):
    assert cli("deploy", "--endpoint_name", "bincount-scaled", "--model_data", model_data, "--instance_count", "2",
               "--autoscale", "1:4", "--target_invocations", "900", "--wait", "false") == 0
    assert capsys.readouterr().out.strip() == "endpoint bincount-scaled creating"
    policies = client.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    (policy,) = [policy for policy in policies if policy["ResourceId"] == "endpoint/bincount-scaled/variant/AllTraffic"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 900
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"

    assert cli("status", "--endpoint_name", "bincount-scaled") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "InService"
    (variant,) = shown["variants"]
    assert variant["variant"] == "AllTraffic"
    assert (variant["autoscaling"]["min_instances"], variant["autoscaling"]["max_instances"],
            variant["autoscaling"]["target_invocations"]) == (1, 4, 900)

    assert cli("delete", "--endpoint_name", "bincount-scaled") == 0
    assert capsys.readouterr().out.strip().endswith(
        f"scaling policy {autoscaling.POLICY}, scalable target endpoint/bincount-scaled/variant/AllTraffic")
    assert targets_of(client, "bincount-scaled") == []


@pytest.mark.parametrize("argv, message", [
    (["--autoscale", "1:4"], "--target_invocations"),
    (["--target_invocations", "100"], "goes with --autoscale"),
    (["--autoscale", "2:4", "--target_invocations", "100"], "outside --autoscale"),
    (["--autoscale", "1:4", "--target_invocations", "100", "--serverless_memory_mb", "2048"], "serverless"),
])
def test_bad_autoscale_settings_fail_before_any_api_call(sagemaker, argv, message, capsys):
    model_data = "s3://bincount-deploy-test/never-read/model.tar.gz"
    assert cli("deploy", "--endpoint_name", "bincount-bad", "--model_data", model_data, *argv) == 2
    assert message in capsys.readouterr().err
    names = [endpoint["EndpointName"] for endpoint in sagemaker.list_endpoints()["Endpoints"]]
    assert "bincount-bad" not in names  # moto is shared by the session: other tests' endpoints stay listed


def test_package_onnx_ships_the_export_that_the_server_then_uses_without_exporting(cloud, training_output, tmp_path,
                                                                                   caplog):
    import io
    import tarfile

    from cloud import s3 as cloud_s3
    from inference import deploy
    from inference.backends import OnnxBackend, onnx_path
    from inference.serve import make_server

    uri = deploy.package(training_output, onnx=True)
    bucket, key = cloud_s3.parse_s3_uri(uri)
    with tarfile.open(fileobj=io.BytesIO(cloud_s3.get(cloud, bucket, key)), mode="r:gz") as tar:
        assert f"onnx/{onnx_path(training_output).name}" in tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    with caplog.at_level("INFO"):
        server = make_server(tmp_path / "unpacked", port=0, backend="onnx")
    server.server_close()
    assert isinstance(server.app.service.backend, OnnxBackend)
    assert server.app.service.backend.path.parent == tmp_path / "unpacked" / "onnx"
    assert not [record for record in caplog.records if "exporting" in record.getMessage()]
