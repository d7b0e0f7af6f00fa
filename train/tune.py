"""Search hyperparameters locally: ``python -m train.tune [train.run arguments] --n_trials 8``.

Optuna (TPE) through ``Trainer.hyperparameter_search`` over learning rate (log scale), batch size, epochs and weight
decay, each trial trained and evaluated exactly as ``train.run`` would. Writes ``best_params.json`` and
``trials.md`` / ``trials.csv`` (every trial, its parameters and objective) to ``output_dir``. For the same search on
SageMaker, see ``python -m train.launch_sagemaker tune``.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.cli import entry_point, parse
from train import model as models
from train.args import ARGUMENT_GROUPS, defaults
from train.run import setup


@dataclass
class SearchArguments:
    n_trials: int = field(default=8, metadata={"help": "Number of trials."})
    learning_rate_min: float = field(default=1e-5, metadata={"help": "Smallest learning rate (log scale)."})
    learning_rate_max: float = field(default=1e-2, metadata={"help": "Largest learning rate (log scale)."})
    batch_sizes: list[int] = field(default_factory=lambda: [16, 32, 64], metadata={"help": "Batch sizes to try."})
    epochs_min: int = field(default=2, metadata={"help": "Fewest epochs."})
    epochs_max: int = field(default=10, metadata={"help": "Most epochs."})
    weight_decay_max: float = field(default=0.1, metadata={"help": "Largest weight decay (from 0)."})


def search(search_args: SearchArguments, data_args, model_args, counting, out, training) -> dict:
    training.save_strategy = "no"  # trials are compared on their final evaluation; no checkpoints needed
    training.load_best_model_at_end = False
    run_setup = setup(data_args, model_args, counting, out, training)
    trainer = run_setup.trainer
    trainer.model_init = lambda trial=None: models.load(model_args, run_setup.splits.names)[0]
    objective = f"eval_{training.metric_for_best_model.removeprefix('eval_')}"

    def space(trial) -> dict:
        return {
            "learning_rate": trial.suggest_float("learning_rate", search_args.learning_rate_min,
                                                 search_args.learning_rate_max, log=True),
            "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size",
                                                                     search_args.batch_sizes),
            "num_train_epochs": trial.suggest_int("num_train_epochs", search_args.epochs_min, search_args.epochs_max),
            "weight_decay": trial.suggest_float("weight_decay", 0.0, search_args.weight_decay_max),
        }

    trials: list[dict] = []

    def record(metrics: dict) -> float:
        trials.append({**trainer.state.trial_params, objective: metrics[objective]})
        return metrics[objective]

    best = trainer.hyperparameter_search(
        hp_space=space, compute_objective=record, n_trials=search_args.n_trials, backend="optuna",
        direction="maximize" if training.greater_is_better else "minimize")
    output = Path(training.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    result = {"objective": objective, "best_value": best.objective, "best_params": best.hyperparameters}
    (output / "best_params.json").write_text(json.dumps(result, indent=1))
    columns = ["learning_rate", "per_device_train_batch_size", "num_train_epochs",
               "weight_decay", objective]
    with open(output / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(trials)
    rows = [f"| {i} | " + " | ".join(f"{t[c]:.4g}" for c in columns) + " |" for i, t in enumerate(trials)]
    (output / "trials.md").write_text("| trial | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 1) +
                                      "\n" + "\n".join(rows) + "\n")
    return result


@entry_point
def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = HfArgumentParser((SearchArguments, *ARGUMENT_GROUPS))
    parser.set_defaults(**defaults())
    search_args, *groups = parse(parser, argv)
    result = search(search_args, *groups)
    print(f"best {result['objective']} = {result['best_value']:.4f} with {json.dumps(result['best_params'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
