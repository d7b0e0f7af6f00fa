"""How close the synthetic default is to real bins: ``data.realism``'s report on ../shared/abid-real against as many
fresh synthetic bins.

    python -m bench.realism [--num_images 1050] [--real ../shared/abid-real] [--seed 0]

Writes bench/results/realism.json (the report and the machine) and bench/results/realism/ (realism.md, realism.png,
realism_stats.png); the synthetic bins go to bench/results/realism/synthetic (reused when re-run with the same
settings).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from bench.report import RESULTS, fail, machine, save_results
from data.realism import markdown, realism_report
from data.synthetic import generate

REAL = Path(__file__).resolve().parents[2] / "shared" / "abid-real"


@dataclass
class RealismBenchArguments:
    real: str = field(default=str(REAL), metadata={"help": "Folder of real bins."})
    num_images: int = field(default=1050, metadata={"help": "Synthetic bins to compare (and real bins at most)."})
    seed: int = field(default=0, metadata={"help": "Seed of the synthetic bins, the sampling and the test's split."})


def main(argv: list[str] | None = None) -> int:
    (args,) = HfArgumentParser(RealismBenchArguments).parse_args_into_dataclasses(argv)
    if not Path(args.real).is_dir():
        fail(f"no real bins at {args.real}")
    out = RESULTS / "realism"
    generate(out / "synthetic", args.num_images, args.seed)
    report = realism_report(Path(args.real), out / "synthetic", out, args.num_images, args.seed)
    save_results("realism", {"machine": machine(), "seed": args.seed, **report})
    print(markdown(report))
    head = report["headline"]
    print(f"\nTwo-sample test ({head['model']}): {100 * head['accuracy']:.1f}% held-out accuracy, 95% CI "
          f"{100 * head['ci95'][0]:.1f}-{100 * head['ci95'][1]:.1f}% (50% = indistinguishable); pictures in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
