"""Scale a real-time endpoint like a production one: Application Auto Scaling target tracking on its variant.

SageMaker keeps the variant between ``MIN`` and ``MAX`` instances and adds or removes instances so that the
predefined metric ``SageMakerVariantInvocationsPerInstance`` (invocations per instance per minute) stays near the
target. A sensible target is the throughput one instance sustains, in requests per minute, times a safety factor
(see the README's sizing arithmetic). ``enable`` registers the variant and its policy, ``disable`` removes both
(before the endpoint is deleted), ``describe`` reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from core.cli import UserError

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
POLICY = "bincount-invocations-per-instance"


@dataclass(frozen=True)
class Autoscale:
    """Instances between ``min_instances`` and ``max_instances``, ``target_invocations`` per instance per minute."""

    min_instances: int
    max_instances: int
    target_invocations: float
    scale_in_cooldown_s: int = 300  # remove instances slowly: a burst often comes back
    scale_out_cooldown_s: int = 60  # add them quickly

    @classmethod
    def parse(cls, text: str, target_invocations: float | None) -> Autoscale:
        """``"MIN:MAX"`` and the target, checked: UserError naming what is wrong."""
        try:
            low, high = (int(part) for part in text.split(":"))
        except ValueError:
            raise UserError(f"--autoscale takes MIN:MAX instance counts, like 1:4; got {text!r}") from None
        if not 1 <= low <= high:
            raise UserError(f"--autoscale {text}: need 1 <= MIN <= MAX")
        if target_invocations is None or not target_invocations > 0:
            raise UserError("--autoscale needs --target_invocations N (> 0: invocations per instance per minute)")
        return cls(low, high, float(target_invocations))


def resource_id(endpoint_name: str, variant: str = "AllTraffic") -> str:
    return f"endpoint/{endpoint_name}/variant/{variant}"


def enable(client: Any, endpoint_name: str, autoscale: Autoscale, variant: str = "AllTraffic") -> dict:
    """Register the variant as a scalable target and attach the target-tracking policy; the policy's ARN and alarms."""
    resource = resource_id(endpoint_name, variant)
    client.register_scalable_target(ServiceNamespace=NAMESPACE, ResourceId=resource, ScalableDimension=DIMENSION,
                                    MinCapacity=autoscale.min_instances, MaxCapacity=autoscale.max_instances)
    return client.put_scaling_policy(
        PolicyName=POLICY, ServiceNamespace=NAMESPACE, ResourceId=resource, ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": autoscale.target_invocations,
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": autoscale.scale_in_cooldown_s, "ScaleOutCooldown": autoscale.scale_out_cooldown_s})


def describe(client: Any, endpoint_name: str, variant: str = "AllTraffic") -> dict | None:
    """The variant's scaling as registered (min, max, target, cooldowns), or None when it has none."""
    resource = resource_id(endpoint_name, variant)
    targets = client.describe_scalable_targets(ServiceNamespace=NAMESPACE, ResourceIds=[resource],
                                               ScalableDimension=DIMENSION)["ScalableTargets"]
    if not targets:
        return None
    policies = client.describe_scaling_policies(ServiceNamespace=NAMESPACE, ResourceId=resource,
                                                ScalableDimension=DIMENSION)["ScalingPolicies"]
    tracking = [p["TargetTrackingScalingPolicyConfiguration"] for p in policies if p["PolicyName"] == POLICY]
    answer = {"resource_id": resource, "min_instances": targets[0]["MinCapacity"],
              "max_instances": targets[0]["MaxCapacity"], "policies": [p["PolicyName"] for p in policies]}
    if tracking:
        answer.update(target_invocations=tracking[0]["TargetValue"],
                      metric=tracking[0]["PredefinedMetricSpecification"]["PredefinedMetricType"],
                      scale_in_cooldown_s=tracking[0].get("ScaleInCooldown"),
                      scale_out_cooldown_s=tracking[0].get("ScaleOutCooldown"))
    return answer


def disable(client: Any, endpoint_name: str, variant: str = "AllTraffic") -> list[str]:
    """Remove the policy and deregister the variant (what existed: nothing to remove is not an error)."""
    resource, removed = resource_id(endpoint_name, variant), []
    for call, kwargs, name in [(client.delete_scaling_policy, {"PolicyName": POLICY}, f"scaling policy {POLICY}"),
                               (client.deregister_scalable_target, {}, f"scalable target {resource}")]:
        try:
            call(ServiceNamespace=NAMESPACE, ResourceId=resource, ScalableDimension=DIMENSION, **kwargs)
            removed.append(name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("ObjectNotFoundException", "ValidationException"):
                raise
    return removed
