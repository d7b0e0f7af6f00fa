"""Metric log lines: one stable format for the console, SageMaker metric definitions and tests.

Every log event of a training run prints one line on the main process::

    [metrics] step=120 epoch=1.5 loss=1.2345 grad_norm=0.8 learning_rate=4.5e-05 train_images_per_second=812.3
    [metrics] step=160 epoch=2 eval_loss=1.1 eval_accuracy=0.61 eval_rmse=0.85 eval_rmse_expected=0.7 ...

``step=`` comes first and every other ``name=value`` follows a space, so ``(?:^| )name=`` can never match inside a
longer name (``loss`` is not found in ``eval_loss``). ``metric_definitions()`` gives SageMaker the regexes.
"""

from __future__ import annotations

import math
import time

from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

PREFIX = "[metrics]"
# What SageMaker charts for a training job (CloudWatch metrics), and a tuning job can optimise.
SAGEMAKER_METRICS = (
    "loss", "learning_rate", "train_images_per_second", "eval_loss", "eval_accuracy", "eval_rmse",
    "eval_rmse_expected", "eval_off_by_one_accuracy", "test_accuracy", "test_rmse", "test_rmse_expected",
)


def metric_line(step: int, values: dict[str, float]) -> str:
    parts = [f"step={step}"]
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        parts.append(f"{name}={value:.6g}" if math.isfinite(value) else f"{name}={value}")
    return f"{PREFIX} {' '.join(parts)}"


def metric_regex(name: str) -> str:
    return rf"\[metrics\] step=\d+.* {name}=([-+0-9.eE]+|nan|inf)"


def metric_definitions(names: tuple[str, ...] = SAGEMAKER_METRICS) -> list[dict[str, str]]:
    return [{"Name": name, "Regex": metric_regex(name)} for name in names]


class MetricLines(TrainerCallback):
    """Print every Trainer log as a metric line, with the training throughput since the last one."""

    def __init__(self, images_per_step: int) -> None:
        self.images_per_step = images_per_step
        self.last: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = (time.perf_counter(), state.global_step)

    def on_evaluate(self, args, state, control, **kwargs):
        # Restart the throughput window so evaluation and checkpoint time are not counted as training time.
        self.last = (time.perf_counter(), state.global_step)

    on_save = on_evaluate

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        values = dict(logs)
        if "loss" in values and self.last is not None:
            now = time.perf_counter()
            seconds, steps = now - self.last[0], state.global_step - self.last[1]
            if seconds > 0 and steps > 0:
                values["train_images_per_second"] = steps * self.images_per_step / seconds
            self.last = (now, state.global_step)
        tqdm.write(metric_line(state.global_step, values))


class ProgressBars(ProgressCallback):
    """Trainer's progress bars without its dict prints: ``MetricLines`` already prints every log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass
