"""SageMaker's profiling for training jobs: ``python -m train.launch_sagemaker train ... --profiler``.

What SageMaker still offers the Hugging Face PyTorch training container (PyTorch 2.x), per the SageMaker docs:

- **System monitoring** (``ProfilerConfig``, a sample every 500 ms): CPU, GPU, GPU memory, network and I/O use of every
  instance, collected by the platform (no change to the training script), written under the job's output path.
- **The ProfilerReport rule and the system-metric profiler rules** (LowGPUUtilization, CPUBottleneck, IOBottleneck,
  GPUMemoryIncrease, BatchSize, LoadBalancing), each evaluated beside the job on those metrics; ProfilerReport writes
  an HTML report (``rule-output/<rule>/profiler-output/profiler-report.html``) and its notebook.
- **Not available**: Debugger *framework* profiling (deprecated from PyTorch 2.0 and SDK 2.130; its successor,
  SageMaker Profiler, needs AWS's own PyTorch images and code changes) and the Debugger *tensor* rules
  (loss_not_decreasing, overfit, vanishing_gradient, ...), which read tensors saved by the smdebug hook that the
  PyTorch 2.x containers no longer run. The debugger hook therefore stays off. Operator-level profiling of the
  training steps is ``train.run --profile`` (torch.profiler), which works there as everywhere.
"""

from __future__ import annotations

SYSTEM_RULES = ("LowGPUUtilization", "CPUBottleneck", "IOBottleneck", "GPUMemoryIncrease", "BatchSize", "LoadBalancing")
MONITOR_INTERVAL_MS = 500
REPORT = "profiler-output/profiler-report.html"


def estimator_settings(profiler: bool) -> dict:
    """Keyword arguments of the estimator: monitoring and profiler rules, or everything off (the default)."""
    if not profiler:
        return {"debugger_hook_config": False, "disable_profiler": True}
    from sagemaker.debugger import ProfilerConfig, ProfilerRule, rule_configs

    rules = [ProfilerRule.sagemaker(getattr(rule_configs, name)()) for name in ("ProfilerReport", *SYSTEM_RULES)]
    return {"debugger_hook_config": False, "rules": rules,
            "profiler_config": ProfilerConfig(system_monitor_interval_millis=MONITOR_INTERVAL_MS)}


def rule_lines(job: dict) -> list[str]:
    """For ``status``: each rule's evaluation status, and where the rule output and the profiler report are."""
    name = job.get("TrainingJobName", "")
    base = (job.get("ProfilerConfig") or {}).get("S3OutputPath")
    rules = [c["RuleConfigurationName"] for key in ("ProfilerRuleConfigurations", "DebugRuleConfigurations")
             for c in job.get(key) or []]
    lines = []
    for key, kind in (("ProfilerRuleEvaluationStatuses", "profiler rule"), ("DebugRuleEvaluationStatuses", "rule")):
        for rule in job.get(key) or []:
            detail = f" ({rule['StatusDetails']})" if rule.get("StatusDetails") else ""
            lines.append(f"{kind} {rule['RuleConfigurationName']}: {rule.get('RuleEvaluationStatus', '?')}{detail}")
    if rules and not lines:
        lines.append(f"rules {', '.join(rules)}: no evaluation status reported yet")
    if base and not (job.get("ProfilerConfig") or {}).get("DisableProfiler"):
        root = f"{base.rstrip('/')}/{name}"
        lines += [f"profiler report: {root}/rule-output/{rule}/{REPORT}" for rule in rules
                  if rule.startswith("ProfilerReport")]
        lines.append(f"system metrics: {root}/profiler-output/")
    return lines
