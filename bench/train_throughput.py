"""Training throughput through the real data path: train.run's Trainer vs a plain PyTorch loop, same DataLoader.

    python -m bench.train_throughput [--dataset DIR] [--models tiny-resnet tiny-vit] [--steps 30] [--warmup 5]

For each model, in one process and on the same device: (1) the DataLoader alone (decode + augmentation + processor
in the workers), (2) the Trainer exactly as ``train.run`` assembles it, (3) a plain loop doing the same work (the same
loss, gradient clipping, AdamW, cosine schedule) on the same DataLoader object, autocast bf16 on GPUs. Images/s are
timed after ``--warmup`` steps. On a GPU the default models are ViT-B/16 and ResNet-50 at 224 px built from config
(the architectures of google/vit-base-patch16-224-in21k and microsoft/resnet-50) and MFU is reported from their known
training FLOPs (3 x forward).
Without ``--dataset`` a synthetic dataset is generated and built under bench/results/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainerCallback

from bench.report import RESULTS, describe, machine, markdown_table, save_results

ROOT = Path(__file__).resolve().parents[1]
# Forward GFLOPs per image at 224 px (2 x MACs); a training step costs about 3 forwards.
FORWARD_GFLOPS = {"vit-base": 35.2, "resnet-50": 8.2}
H100_BF16_DENSE_TFLOPS = 989.0


@dataclass
class BenchArguments:
    dataset: str | None = field(default=None, metadata={"help": "A data.build folder (default: synthetic)."})
    models: list[str] = field(default_factory=list, metadata={
        "help": "tiny-resnet, tiny-vit, vit-base, resnet-50 (default: tiny ones on CPU, base ones on GPU)."})
    steps: int = field(default=30, metadata={"help": "Timed optimizer steps per path."})
    warmup: int = field(default=5, metadata={"help": "Untimed steps first."})
    batch_size: int = field(default=32, metadata={"help": "Per-device batch size (GPU default: 256)."})
    num_workers: int = field(default=os.cpu_count() or 1, metadata={"help": "DataLoader workers."})
    num_images: int = field(default=2000, metadata={"help": "Synthetic images when no dataset is given."})


def synthetic_dataset(num_images: int) -> Path:
    bucket, dataset = RESULTS / f"synthetic-{num_images}", RESULTS / f"dataset-{num_images}"
    if not (dataset / "dataset_dict.json").is_file():
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "data.synthetic", "--output", str(bucket), "--num_images",
                        str(num_images), "--seed", "0"], check=True, env=env)
        subprocess.run([sys.executable, "-m", "data.build", "--source", str(bucket), "--output", str(dataset)],
                       check=True, env=env)
    return dataset


def model_source(name: str) -> str:
    """A config-only folder for ``name`` (the shipped tiny configs, or base architectures written from config)."""
    if name.startswith("tiny-"):
        return str(ROOT / "train" / "configs" / name)
    from transformers import ConvNextImageProcessor, ResNetConfig, ViTConfig, ViTImageProcessor

    folder = RESULTS / "configs" / name
    if not (folder / "config.json").is_file():
        config = ViTConfig() if name == "vit-base" else ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3])
        processor = ViTImageProcessor() if name == "vit-base" else ConvNextImageProcessor(size={"shortest_edge": 224})
        config.save_pretrained(folder)
        processor.save_pretrained(folder)
    return str(folder)


class StepClock(TrainerCallback):
    """Times optimizer steps after the warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.steps = warmup, None, 0

    def on_step_end(self, args, state, control, **kwargs):
        if args.device.type == "cuda":
            torch.cuda.synchronize()
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        elif state.global_step > self.warmup:
            self.steps = state.global_step - self.warmup


def trainer_for(name: str, dataset: str, bench: BenchArguments, output: Path):
    from train.args import parse_args
    from train.run import setup

    args = ["--dataset", dataset, "--model_name_or_path", model_source(name), "--output_dir", str(output),
            "--overwrite", "--per_device_train_batch_size", str(bench.batch_size), "--dataloader_num_workers",
            str(bench.num_workers), "--max_steps", str(bench.warmup + bench.steps), "--save_strategy", "no",
            "--eval_strategy", "no", "--load_best_model_at_end", "False", "--logging_steps", str(10**6),
            "--disable_tqdm", "True", "--learning_rate", "1e-4", "--dataloader_persistent_workers", "True"]
    return setup(*parse_args(args))


def time_loader(loader, warmup: int, steps: int) -> float:
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    start, images = time.perf_counter(), 0
    for _ in range(steps):
        images += len(next(iterator)["labels"])
    return images / (time.perf_counter() - start)


def time_plain_loop(model, loader, loss_fn, warmup: int, steps: int, device: torch.device,
                    max_grad_norm: float) -> float:
    """The same work as a Trainer step, written out: forward, loss, backward, clipping, AdamW, LR schedule."""
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, warmup + steps)
    model.train()
    iterator, images, start = iter(loader), 0, None
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, images = time.perf_counter(), 0
        batch = next(iterator)
        pixel_values, labels = batch["pixel_values"].to(device, non_blocking=True), batch["labels"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            outputs = model(pixel_values=pixel_values)
        loss = loss_fn(outputs, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        images += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - start)


def bench_model(name: str, dataset: str, bench: BenchArguments) -> dict:
    run_setup = trainer_for(name, dataset, bench, RESULTS / "runs" / name)
    trainer = run_setup.trainer
    loader = trainer.get_train_dataloader()
    data_only = time_loader(loader, bench.warmup, bench.steps)

    clock = StepClock(bench.warmup)
    trainer.add_callback(clock)
    trainer.train()
    trainer_ips = clock.steps * bench.batch_size / (time.perf_counter() - clock.start)

    # The plain loop: a fresh copy of the same model, the same loss and the very same DataLoader.
    model = type(trainer.model)(trainer.model.config).to(trainer.args.device)
    plain_ips = time_plain_loop(model, loader, trainer.compute_loss_func, bench.warmup, bench.steps,
                                trainer.args.device, trainer.args.max_grad_norm)
    row = {"model": name, "device": str(trainer.args.device), "batch_size": bench.batch_size,
           "num_workers": bench.num_workers, "dataloader_images_per_s": round(data_only, 1),
           "trainer_images_per_s": round(trainer_ips, 1), "plain_loop_images_per_s": round(plain_ips, 1),
           "trainer_vs_plain": round(trainer_ips / plain_ips, 3)}
    if name in FORWARD_GFLOPS and trainer.args.device.type == "cuda":
        row["trainer_mfu_vs_h100_bf16_dense"] = round(trainer_ips * 3 * FORWARD_GFLOPS[name] / 1e3 /
                                                      H100_BF16_DENSE_TFLOPS, 3)
    return row


def main() -> None:
    (bench,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses()
    cuda = torch.cuda.is_available()
    if cuda and bench.batch_size == 32:
        bench.batch_size = 256
    models = bench.models or (["vit-base", "resnet-50"] if cuda else ["tiny-resnet", "tiny-vit"])
    dataset = bench.dataset or str(synthetic_dataset(bench.num_images))
    rows = [bench_model(name, dataset, bench) for name in models]
    info = machine()
    save_results("train_throughput", {"machine": info, "rows": rows})
    print(f"\nMachine: {describe(info)}\n\n{markdown_table(rows)}")


if __name__ == "__main__":
    main()
