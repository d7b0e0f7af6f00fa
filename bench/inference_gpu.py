"""Batched inference throughput on a CUDA GPU: images/s of ViT-B/16 and ResNet-50 (built from config, random weights)
in bfloat16 at several batch sizes, on already pre-processed 224x224 tensors: the model's ceiling, without decoding.

    python -m bench.inference_gpu [--batch_sizes 1,8,32,128,256] [--iterations 30] [--channels_last true]

FLOPs per image are counted by torch's FlopCounterMode on the model itself, so the table also shows the TFLOP/s
reached. A batch size that runs out of memory is reported as such and ends that model's sweep. Prints a Markdown
table and writes ``bench/results/inference_gpu.json`` with the device and the machine. Without a CUDA device it
says so and exits with status 2.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm
from transformers import AutoModelForImageClassification, HfArgumentParser

from bench.handler_latency import ARCHITECTURES, build_model
from bench.report import fail, machine, markdown_table, save_results


@dataclass
class GpuArguments:
    batch_sizes: str = field(default="1,8,32,128,256", metadata={"help": "Comma-separated batch sizes."})
    iterations: int = field(default=30, metadata={"help": "Timed forward passes per batch size."})
    warmup: int = field(default=5, metadata={"help": "Untimed forward passes first (kernel selection, allocator)."})
    channels_last: bool = field(default=True, metadata={"help": "ResNet-50 in channels-last memory format."})


def flops_per_image(model: torch.nn.Module, pixels: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(pixel_values=pixels[:1])
    return counter.get_total_flops()


def images_per_second(model: torch.nn.Module, pixels: torch.Tensor, iterations: int, warmup: int) -> float:
    """Forward passes timed with CUDA events around the whole run, so the GPU is never waited on in between."""
    with torch.inference_mode():
        for _ in range(warmup):
            model(pixel_values=pixels)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(iterations):
            model(pixel_values=pixels)
        end.record()
        torch.cuda.synchronize()
    return pixels.shape[0] * iterations / (start.elapsed_time(end) / 1000)


def main() -> None:
    (args,) = HfArgumentParser(GpuArguments).parse_args_into_dataclasses()
    if not torch.cuda.is_available():
        fail("no CUDA device: this benchmark measures GPU throughput; run it on a machine with an NVIDIA GPU")
    try:
        batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    except ValueError:
        fail(f"--batch_sizes must be comma-separated integers, got {args.batch_sizes!r}")
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    results = {"machine": machine(), "device": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
               "settings": asdict(args), "models": {}}

    rows = []
    for name in ARCHITECTURES:
        with tempfile.TemporaryDirectory() as folder:
            model = AutoModelForImageClassification.from_pretrained(build_model(name, Path(folder)))
        model = model.to(device, torch.bfloat16).eval()
        memory_format = torch.channels_last if args.channels_last and "ResNet" in name else torch.contiguous_format
        model = model.to(memory_format=memory_format)
        flops = None
        results["models"][name] = {}
        for batch_size in tqdm(batch_sizes, desc=name):
            pixels = torch.randn(batch_size, 3, 224, 224, device=device, dtype=torch.bfloat16)
            pixels = pixels.contiguous(memory_format=memory_format)
            flops = flops or flops_per_image(model, pixels)
            try:
                rate = images_per_second(model, pixels, args.iterations, args.warmup)
            except torch.cuda.OutOfMemoryError:
                results["models"][name][batch_size] = "out of memory"
                rows.append({"model": name, "batch": batch_size, "images/s": "out of memory", "TFLOP/s": ""})
                torch.cuda.empty_cache()
                break
            results["models"][name][batch_size] = {"images_per_s": round(rate, 1),
                                                   "tflops": round(rate * flops / 1e12, 1)}
            rows.append({"model": name, "batch": batch_size, "images/s": f"{rate:,.0f}",
                         "TFLOP/s": f"{rate * flops / 1e12:.1f}"})
        results["models"][name]["gflops_per_image"] = round(flops / 1e9, 2)
        del model
        torch.cuda.empty_cache()

    print(f"Inference throughput, bf16, on {results['device']} (CUDA {results['cuda']}, torch {torch.__version__}); "
          f"host CPU {results['machine']['cpu']}\n")
    print(markdown_table(rows))
    print(f"\nwritten to {save_results('inference_gpu', results)}")


if __name__ == "__main__":
    main()
