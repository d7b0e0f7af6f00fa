"""Profile a window of training steps: ``python -m train.run ... --profile [--profile_steps 3-7]``.

A ``TrainerCallback`` runs ``torch.profiler`` over a few optimizer steps after warm-up (the first steps pay for lazy
initialisation, cuDNN autotuning and compilation, so they would mislead). It writes:

- ``<output_dir>/profile/rank<N>.<time>.pt.trace.json``: the Chrome trace, which Perfetto (ui.perfetto.dev),
  chrome://tracing and TensorBoard's PyTorch profiler plugin open; the steps carry ``train/forward_backward`` and
  ``train/optimizer`` ranges beside the DataLoader's own ``enumerate(DataLoader)`` ranges;
- ``<output_dir>/profile.md`` and the log: the top operators by self time, the step time split into data wait,
  forward-backward (with gradient clipping), optimizer (with scheduler and zero_grad) and the rest (logging,
  callbacks), images/s, and on CUDA the memory peaks and how busy the GPU was.

In a SageMaker training job both go to ``SM_OUTPUT_DATA_DIR`` instead (``/opt/ml/output/data``), which SageMaker
uploads as the job's ``output.tar.gz``. On CUDA the callback synchronises at the step boundaries inside the window,
so the split is wall time of finished work.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule
from transformers import TrainerCallback

logger = logging.getLogger("train.profiling")
WINDOW = re.compile(r"(\d+)(?:-(\d+))?")
OWN_RANGES = ("ProfilerStep", "train/")  # the step markers, not operators
DATA_RANGE = "enumerate(DataLoader)"


def parse_window(text: str) -> tuple[int, int]:
    """``"3-7"`` -> (3, 7): the first and last optimizer step of this run to record (``"4"``: that step alone)."""
    match = WINDOW.fullmatch(text.strip())
    if not match:
        raise ValueError(f"--profile_steps takes FIRST-LAST optimizer steps like 3-7, got {text!r}")
    first, last = int(match[1]), int(match[2] or match[1])
    if not 1 <= first <= last:
        raise ValueError(f"--profile_steps {text}: steps count from 1 and FIRST <= LAST")
    return first, last


@dataclass
class StepTimes:
    """Wall time (seconds) of each recorded step and of its parts."""

    step: list[float] = field(default_factory=list)
    forward_backward: list[float] = field(default_factory=list)
    optimizer: list[float] = field(default_factory=list)


class StepProfiler(TrainerCallback):
    """torch.profiler over optimizer steps FIRST..LAST of this run, then a summary (see the module docstring)."""

    def __init__(self, window: str, error: type[Exception] = ValueError):
        try:
            self.first, self.last = parse_window(window)
        except ValueError as problem:
            raise error(str(problem)) from None
        self.error = error
        self.cuda = torch.cuda.is_available()
        self.times = StepTimes()
        self.steps = 0  # optimizer steps finished in this run
        self.marks: dict[str, float] = {}
        self.ranges: list = []
        self.profiler: profile | None = None
        self.averages = None
        self.trace_dir: Path | None = None
        self.trace: Path | None = None
        self.folder: Path | None = None
        self.utilization: list[int] = []

    def on_train_begin(self, args, state, control, **kwargs):
        remaining = state.max_steps - state.global_step
        if remaining < self.first:
            raise self.error(f"--profile_steps {self.first}-{self.last}: this run has only {remaining} optimizer steps")
        if remaining < self.last:
            logger.warning("profiling steps %d-%d: the run ends after step %d", self.first, remaining, remaining)
            self.last = remaining
        self.folder = Path(os.environ.get("SM_OUTPUT_DATA_DIR") or args.output_dir)  # SageMaker uploads that one
        self.trace_dir = self.folder / "profile"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        warmup = min(1, self.first - 1)
        self.profiler = profile(
            activities=activities, profile_memory=self.cuda, with_stack=False,
            schedule=schedule(wait=self.first - 1 - warmup, warmup=warmup, active=self.last - self.first + 1),
            on_trace_ready=self._trace_ready)
        self.profiler.start()
        self.marks["end"] = time.perf_counter()

    def _trace_ready(self, profiler: profile) -> None:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        self.trace = self.trace_dir / f"rank{rank}.{time.time_ns()}.pt.trace.json"  # the name TensorBoard looks for
        profiler.export_chrome_trace(str(self.trace))
        self.averages = profiler.key_averages()

    def _recording(self) -> bool:
        return self.first <= self.steps + 1 <= self.last

    def _mark(self, name: str) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.marks[name] = now
        return now

    def _close_range(self) -> None:
        if self.ranges:
            self.ranges.pop().__exit__(None, None, None)

    def _open_range(self, name: str) -> None:
        self.ranges.append(record_function(name))
        self.ranges[-1].__enter__()

    def on_step_begin(self, args, state, control, **kwargs):
        if self._recording():
            if self.steps + 1 == self.first and self.cuda:
                torch.cuda.reset_peak_memory_stats()
            self._mark("begin")
            self._open_range("train/forward_backward")

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self._recording():
            self._close_range()
            self.times.forward_backward.append(self._mark("pre_optimizer") - self.marks["begin"])
            self._open_range("train/optimizer")

    def on_step_end(self, args, state, control, **kwargs):
        if self._recording():
            self._close_range()
            previous_end = self.marks["end"]
            end = self._mark("end")
            self.times.optimizer.append(end - self.marks["pre_optimizer"])
            self.times.step.append(end - previous_end)
            if self.cuda:
                self.utilization += sampled_utilization()
        else:
            self.marks["end"] = time.perf_counter()
        self.steps += 1
        if self.profiler is not None:
            self.profiler.step()
            if self.steps >= self.last:
                self._finish(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        if self.profiler is not None:  # the run stopped early (early stopping, a kill switch)
            self._finish(args, state)

    def _finish(self, args, state) -> None:
        while self.ranges:
            self._close_range()
        self.profiler.stop()
        self.profiler = None
        if not state.is_world_process_zero or self.averages is None or not self.times.step:
            return
        images = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        window = (self.first, self.first + len(self.times.step) - 1)
        report = summarize(self.averages, self.times, images, window, self.trace, self.utilization)
        (self.folder / "profile.md").write_text(report)
        logger.info("profile of training steps %d-%d (also in %s)\n%s", *window, self.folder / "profile.md", report)


def sampled_utilization() -> list[int]:
    """NVML's GPU utilisation now, when NVML is there to ask (torch asks it through pynvml)."""
    try:
        return [int(torch.cuda.utilization())]
    except Exception:  # no pynvml / NVML: the trace's kernel time still says how busy the GPU was
        return []


def kernel_busy_seconds(trace: Path) -> float:
    """Time at least one GPU kernel or copy ran, from the trace (overlapping kernels count once)."""
    events = json.loads(trace.read_text()).get("traceEvents", [])
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e)
    busy, reach = 0.0, float("-inf")
    for start, end in spans:
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    return busy / 1e6


def split_table(averages, times: StepTimes) -> tuple[str, float]:
    """The mean step split into its parts (Markdown), and the mean step time in seconds."""
    n = len(times.step)
    step = sum(times.step) / n
    data = sum(e.cpu_time_total for e in averages if e.key.startswith(DATA_RANGE)) / 1e6 / n
    forward_backward = sum(times.forward_backward) / n
    optimizer = sum(times.optimizer) / n
    parts = [("data wait", data), ("forward-backward (with gradient clipping)", forward_backward),
             ("optimizer (with scheduler, zero_grad)", optimizer),
             ("the rest (logging, callbacks)", max(0.0, step - data - forward_backward - optimizer)),
             ("whole step", step)]
    rows = [f"| {name} | {seconds * 1e3:.2f} | {100 * seconds / step:.1f}% |" for name, seconds in parts]
    spread = f"{min(times.step) * 1e3:.2f}-{max(times.step) * 1e3:.2f} ms"
    return "\n".join(["| Part | ms per step | Share |", "|---|---:|---:|", *rows,
                      f"\nStep time range over the window: {spread}."]), step


def top_operators(averages, device: bool, limit: int = 10) -> str:
    """The operators that took the most self time (time in the operator itself, not in what it called)."""
    attribute = "self_device_time_total" if device else "self_cpu_time_total"
    rows = [e for e in averages if not e.key.startswith((*OWN_RANGES, DATA_RANGE))]
    total = sum(getattr(e, attribute) for e in rows) or 1.0
    rows = sorted(rows, key=lambda e: getattr(e, attribute), reverse=True)[:limit]
    where = "GPU" if device else "CPU"
    lines = [f"| Operator | Calls | Self {where} ms | Share |", "|---|---:|---:|---:|"]
    lines += [f"| `{e.key[:70]}` | {e.count} | {getattr(e, attribute) / 1e3:.2f} | "
              f"{100 * getattr(e, attribute) / total:.1f}% |" for e in rows]
    return "\n".join(lines)


def summarize(averages, times: StepTimes, images_per_step: int, window: tuple[int, int], trace: Path,
              utilization: list[int]) -> str:
    """profile.md: where a training step's time goes."""
    split, step = split_table(averages, times)
    sections = [f"# Training profile: optimizer steps {window[0]}-{window[1]}",
                f"Trace: `{trace}` (open it in ui.perfetto.dev, chrome://tracing or TensorBoard's PyTorch profiler "
                "plugin).", f"Throughput: **{images_per_step / step:.1f} images/s** ({images_per_step} images per "
                f"optimizer step, all processes).", "## Step time", split,
                "## Top operators by self CPU time", top_operators(averages, device=False)]
    if torch.cuda.is_available():
        busy = kernel_busy_seconds(trace) / sum(times.step)
        nvml = f"; NVML utilisation {sum(utilization) / len(utilization):.0f}% (mean of {len(utilization)} samples)" \
            if utilization else ""
        sections += ["## GPU", f"Device {torch.cuda.get_device_name()}: peak memory allocated "
                     f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB, reserved "
                     f"{torch.cuda.max_memory_reserved() / 2**20:.0f} MiB; kernels running {100 * busy:.0f}% of the "
                     f"window's wall time{nvml}.", "## Top operators by self GPU time",
                     top_operators(averages, device=True)]
    return "\n\n".join(sections) + "\n"
