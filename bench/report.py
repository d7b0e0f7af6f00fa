"""What every benchmark shares: where results go, the machine they were measured on, and the Markdown table."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the figures were measured on; the load average says how busy a shared machine was."""
    import PIL
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch_threads": torch.get_num_threads(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "pillow": PIL.__version__}


def describe(info: dict) -> str:
    return (f"{info['cpu']}, {info['usable_cores']} cores, {info['gpu'] or 'no GPU'}, torch {info['torch']} "
            f"({info['torch_threads']} threads), load average {info['load_average'][0]}")


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(key, "")) for key in columns) + " |" for row in rows]
    return "\n".join(lines)


def save_results(name: str, results: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path


def milliseconds(samples: list[float], q: float) -> float:
    """The q-th percentile of durations in seconds, in milliseconds."""
    return round(float(np.percentile(samples, q)) * 1000, 2)


def fail(message: str) -> None:
    """End a benchmark the way the project's commands end on bad input: one line on stderr, status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
