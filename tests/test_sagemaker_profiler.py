"""``train.launch_sagemaker train --profiler``: system monitoring and the profiler rules in the CreateTrainingJob
request (--dry_run, and as sent to moto's server), and ``status`` reporting each rule and where the report is.

moto 5.2.5 keeps a job's DebugRuleConfigurations and DebugHookConfig but drops ProfilerConfig and
ProfilerRuleConfigurations from its DescribeTrainingJob answer, so the profiler settings are checked in the request the
SDK sent to the server (recorded at botocore's API call), and read back where moto keeps them.
"""

from __future__ import annotations

import json

import botocore.client
import pytest

from cloud.sagemaker.profiler import SYSTEM_RULES, rule_lines
from tests.test_sagemaker import TINY, cloud, run_cli  # noqa: F401 - cloud: moto as this module's AWS too
from train.launch_sagemaker import DataChannels, SageMakerArguments, TrainingJobArguments, describe, train

RULES = ["ProfilerReport", *SYSTEM_RULES]


@pytest.fixture
def offline(monkeypatch):
    """AWS settings that a dry run needs and no server behind them."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                        "SAGEMAKER_ROLE": "arn:aws:iam::123456789012:role/sagemaker", "SAGEMAKER_BUCKET": "bins",
                        "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_CONFIG_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)


def check_profiler_request(request: dict, output: str) -> None:
    assert request["ProfilerConfig"] == {"S3OutputPath": output, "ProfilingIntervalInMilliseconds": 500,
                                         "DisableProfiler": False}
    rules = request["ProfilerRuleConfigurations"]
    assert [r["RuleConfigurationName"] for r in rules] == RULES
    assert all(r["RuleParameters"]["rule_to_invoke"] == name for r, name in zip(rules, RULES))
    assert all(r["RuleEvaluatorImage"].endswith("sagemaker-debugger-rules:latest") for r in rules)
    assert "DebugHookConfig" not in request and "DebugRuleConfigurations" not in request  # no smdebug in PyTorch 2.x


def test_dry_run_shows_monitoring_and_the_profiler_rules(offline, capsys):
    code, out, err = run_cli(capsys, "train", "--dry_run", "--profiler", "--dataset_s3", "s3://bins/ds", "--", *TINY)
    assert code == 0, err
    [sent] = json.loads(out)
    check_profiler_request(sent["request"], "s3://bins/bincount/models")


def test_without_profiler_everything_stays_off(offline, capsys):
    code, out, err = run_cli(capsys, "train", "--dry_run", "--dataset_s3", "s3://bins/ds", "--", *TINY)
    assert code == 0, err
    request = json.loads(out)[0]["request"]
    assert request["ProfilerConfig"] == {"DisableProfiler": True}
    assert "ProfilerRuleConfigurations" not in request and "DebugHookConfig" not in request


def test_a_tuning_job_refuses_the_profiler(offline, capsys):
    code, _, err = run_cli(capsys, "tune", "--dry_run", "--profiler", "--dataset_s3", "s3://bins/ds", "--", *TINY[:-6])
    assert code == 2 and "--profiler applies to training jobs" in err


def test_the_job_moto_creates_has_the_profiler_settings_as_sent(cloud, monkeypatch):  # noqa: F811
    sent = []
    call = botocore.client.BaseClient._make_api_call

    def recording(self, operation, params):
        if operation == "CreateTrainingJob":
            sent.append(params)
        return call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    model = train(SageMakerArguments(), TrainingJobArguments(profiler=True, distributed=False),
                  DataChannels(dataset_s3="s3://bincount-launch/bincount/datasets/none"), TINY, wait=False)
    name = model.latest_training_job.name
    [request] = sent
    check_profiler_request(request, "s3://bincount-launch/bincount/models")
    job = cloud["sagemaker"].describe_training_job(TrainingJobName=name)
    assert job["TrainingJobName"] == name and "DebugHookConfig" not in job
    for key in ("ProfilerConfig", "ProfilerRuleConfigurations"):  # what moto keeps of them must be what was sent
        assert job.get(key, request[key]) == request[key]


def test_status_shows_each_rule_and_where_the_report_is():
    job = {"TrainingJobName": "bincount-1", "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed",
           "ProfilerConfig": {"S3OutputPath": "s3://bins/models/", "ProfilingIntervalInMilliseconds": 500},
           "ProfilerRuleConfigurations": [{"RuleConfigurationName": name} for name in RULES],
           "ProfilerRuleEvaluationStatuses": [
               {"RuleConfigurationName": "ProfilerReport", "RuleEvaluationStatus": "NoIssuesFound"},
               {"RuleConfigurationName": "LowGPUUtilization", "RuleEvaluationStatus": "IssuesFound",
                "StatusDetails": "GPU utilization p95 below 70%"}]}
    text = describe(job)
    assert "profiler rule ProfilerReport: NoIssuesFound" in text
    assert "profiler rule LowGPUUtilization: IssuesFound (GPU utilization p95 below 70%)" in text
    assert ("profiler report: s3://bins/models/bincount-1/rule-output/ProfilerReport/profiler-output/"
            "profiler-report.html") in text
    assert "system metrics: s3://bins/models/bincount-1/profiler-output/" in text
    pending = {**job, "ProfilerRuleEvaluationStatuses": []}
    assert "no evaluation status reported yet" in "\n".join(rule_lines(pending))
    assert rule_lines({"TrainingJobName": "x", "ProfilerConfig": {"DisableProfiler": True}}) == []
