"""How fast the synthetic bin generator writes a dataset (JPEG + JSON on disk included): images/s on one core, then
with several worker processes.

    python -m bench.synthetic_speed [--num_images 3000] [--num_proc 2] [--workdir bench/results]

The one-core run pins the process to a single CPU. Wall-clock rates drop when other work shares the machine, so each
run also reports images per CPU-second (the process and its workers), which such sharing barely moves.
The datasets go to a temporary folder under ``--workdir`` (some systems make file creation in /tmp far slower).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from bench.report import describe, machine, markdown_table, save_results
from data.synthetic import generate


@dataclass
class SpeedArguments:
    num_images: int = field(default=3000, metadata={"help": "Images to write per measurement."})
    num_proc: int = field(default=2, metadata={"help": "Worker processes for the second measurement."})
    seed: int = field(default=0, metadata={"help": "Dataset seed."})
    workdir: str = field(default="bench/results", metadata={"help": "Where the temporary datasets are written."})


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measure(workdir: Path, num_images: int, num_proc: int, seed: int = 0) -> tuple[float, float]:
    """Write ``num_images`` bins into a fresh folder under ``workdir``; images per wall-clock and per CPU second."""
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        wall, cpu = time.perf_counter(), cpu_seconds()
        generate(Path(folder), num_images, seed, num_proc=num_proc)
        return num_images / (time.perf_counter() - wall), num_images / (cpu_seconds() - cpu)


def main() -> None:
    (args,) = HfArgumentParser(SpeedArguments).parse_args_into_dataclasses()
    info, cpus = machine(), os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    rows = [{"run": "one core", **rate(*measure(Path(args.workdir), args.num_images, 1, args.seed))}]
    os.sched_setaffinity(0, cpus)
    rows.append({"run": f"--num_proc {args.num_proc} ({len(cpus)} CPUs)",
                 **rate(*measure(Path(args.workdir), args.num_images, args.num_proc, args.seed))})
    save_results("synthetic_speed", {"machine": info, "num_images": args.num_images, "rows": rows})
    print(f"Machine: {describe(info)}; {args.num_images} images per run\n")
    print(markdown_table(rows))


def rate(wall: float, cpu: float) -> dict:
    return {"images/s": round(wall, 1), "images per CPU-second": round(cpu, 1)}


if __name__ == "__main__":
    main()
