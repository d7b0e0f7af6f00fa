"""Endpoint autoscaling against moto's server: the scalable target and its target-tracking policy, read back."""

from __future__ import annotations

import boto3
import pytest

from cloud.sagemaker import autoscaling
from cloud.sagemaker.autoscaling import Autoscale
from core.cli import UserError

REGION = "us-east-1"


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
    target = client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
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
