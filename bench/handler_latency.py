"""What the serving handler costs on top of the model: latency of the full handler (JPEG bytes in, JSON out, through
``input_fn`` -> ``predict_fn`` -> ``output_fn``) against a bare forward pass on an already pre-processed tensor, batch
1 on CPU, for ResNet-50 and ViT-B/16 built from config (random weights: the weights do not change the cost).

    python -m bench.handler_latency [--iterations 100] [--warmup 10] [--threads N] [--images DIR | --synthetic]

The two are timed alternately in one loop, so a busy machine slows both alike. The goal is a handler overhead of at
most 10% at the median; a second table splits the handler's time into its stages (header read, JPEG decode,
pre-processing (the processor's fast path), forward, answer as JSON) to show where any overhead goes. Images: the
real ABID JPEGs of ``--images`` (default ``../shared/abid-real``), or with ``--synthetic`` synthetic bins at ABID's
median size (470x350). Prints Markdown tables and writes
``bench/results/handler_latency.json``; the machine (CPU, cores, torch threads, load) is part of both.

Also what the other serving benchmarks share: ``build_model`` (ResNet-50 / ViT-B/16 from config, with their
checkpoints' processors), ``real_jpegs`` and ``abid_jpegs`` (request bodies).
"""

from __future__ import annotations

import io
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm
from transformers import AutoModelForImageClassification, HfArgumentParser, ResNetConfig, ViTConfig
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from bench.report import fail, machine, markdown_table, milliseconds, save_results
from data.synthetic import JPEG_QUALITY, render_bin, sample_products
from inference import handler

LABELS = [str(count) for count in range(6)]
REAL_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "abid-real"
ABID_MEDIAN_SIZE = (470, 350)
OVERHEAD_GOAL = 0.10


@dataclass
class LatencyArguments:
    iterations: int = field(default=100, metadata={"help": "Timed requests per model (each timed both ways)."})
    warmup: int = field(default=10, metadata={"help": "Untimed requests first."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's own choice)."})
    images: str = field(default=str(REAL_IMAGES), metadata={"help": "Folder of real JPEGs (searched recursively)."})
    synthetic: bool = field(default=False, metadata={"help": "Send 16 synthetic bins at ABID's median size instead."})
    architectures: str = field(default="ResNet-50,ViT-B/16", metadata={"help": "Models to time, comma-separated."})


# Shared by the benchmarks

# The processor classes are imported where used: without torchvision, transformers warns as soon as they are imported.

def resnet50() -> tuple[ResNetConfig, Any]:
    """transformers' ResNetConfig() is ResNet-50; its processor is microsoft/resnet-50's (resize 256, crop 224)."""
    from transformers import ConvNextImageProcessor

    config = ResNetConfig()
    assert (config.layer_type, tuple(config.depths), config.hidden_sizes[-1]) == ("bottleneck", (3, 4, 6, 3), 2048)
    processor = ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875, resample=PILImageResampling.BICUBIC,
                                       image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD)
    return config, processor


def vit_b16() -> tuple[ViTConfig, Any]:
    """transformers' ViTConfig() is ViT-B/16 at 224x224, with its processor (resize to 224x224)."""
    from transformers import ViTImageProcessor

    config = ViTConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.patch_size,
            config.image_size) == (768, 12, 12, 16, 224)
    return config, ViTImageProcessor(size={"height": 224, "width": 224})


ARCHITECTURES = {"ResNet-50": resnet50, "ViT-B/16": vit_b16}


def build_model(name: str, folder: Path, seed: int = 0) -> Path:
    """Save a randomly initialised counting model ("0".."5") of an architecture, with its processor, into ``folder``."""
    config, processor = ARCHITECTURES[name]()
    config.num_labels = len(LABELS)
    config.id2label, config.label2id = dict(enumerate(LABELS)), {label: i for i, label in enumerate(LABELS)}
    torch.manual_seed(seed)
    AutoModelForImageClassification.from_config(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def real_jpegs(folder: str | Path, count: int = 64) -> list[bytes]:
    """Up to ``count`` real JPEGs from ``folder`` and below, spread over it (sorted, then every n-th)."""
    paths = sorted(Path(folder).rglob("*.jp*g"))
    if not paths:
        fail(f"no JPEGs under {folder} (the real ABID development set; --synthetic uses synthetic bins)")
    return [path.read_bytes() for path in paths[::max(1, len(paths) // count)][:count]]


def abid_jpegs(count: int = 16, folder: str | None = None) -> list[bytes]:
    """JPEG bodies like ABID's: the files of ``folder``, or synthetic bins at the median ABID size."""
    if folder:
        return [path.read_bytes() for path in sorted(Path(folder).glob("*.jp*g"))[:count]]
    bodies = []
    for index in range(count):
        rng = random.Random(f"bench:{index}")
        image = render_bin(rng, sample_products(rng, rng.randint(0, 5)), size=ABID_MEDIAN_SIZE)
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
        bodies.append(out.getvalue())
    return bodies


# This benchmark

def time_handler_and_forward(model: handler.CountingModel, bodies: list[bytes], iterations: int, warmup: int
                             ) -> dict[str, list[float]]:
    """Alternately: the full handler on a JPEG, and the bare forward pass on that JPEG's pre-processed tensor."""
    pixels = [model.processor(images=[Image.open(io.BytesIO(body)).convert("RGB")], return_tensors="pt")
              ["pixel_values"] for body in bodies]
    times: dict[str, list[float]] = {"handler": [], "forward": []}
    for step in tqdm(range(warmup + iterations), desc="handler vs forward", leave=False):
        body, tensor = bodies[step % len(bodies)], pixels[step % len(bodies)]
        start = time.perf_counter()
        handler.output_fn(handler.predict_fn(handler.input_fn(body, "image/jpeg"), model), "application/json")
        middle = time.perf_counter()
        with torch.inference_mode():
            model.model(pixel_values=tensor)
        end = time.perf_counter()
        if step >= warmup:
            times["handler"].append(middle - start)
            times["forward"].append(end - middle)
    return times


def time_stages(model: handler.CountingModel, bodies: list[bytes], iterations: int) -> dict[str, list[float]]:
    """The handler's path (handler.predict's steps) split into stages, each timed."""
    settings = handler.Settings()
    stages: dict[str, list[float]] = {name: [] for name in ("header", "decode", "pre-process", "forward", "answer")}
    for step in tqdm(range(iterations), desc="stages", leave=False):
        marks = [time.perf_counter()]
        request = handler.parse_request(bodies[step % len(bodies)], "image/jpeg", settings)
        marks.append(time.perf_counter())
        image = handler.decode_image(request.images[0], "body")
        marks.append(time.perf_counter())
        pixels = handler.pixel_values(model, [image])
        marks.append(time.perf_counter())
        probabilities = handler.classify(model, pixels)
        marks.append(time.perf_counter())
        handler.encode_response(handler.answer(model, request, probabilities, handler.thresholds(model, request)),
                                None)
        marks.append(time.perf_counter())
        for name, begin, end in zip(stages, marks, marks[1:]):
            stages[name].append(end - begin)
    return stages


def main() -> None:
    (args,) = HfArgumentParser(LatencyArguments).parse_args_into_dataclasses()
    if args.threads:
        torch.set_num_threads(args.threads)
    bodies = abid_jpegs() if args.synthetic else real_jpegs(args.images)
    sizes = np.array([Image.open(io.BytesIO(body)).size for body in bodies])
    results = {"machine": machine(), "settings": asdict(args), "models": {}, "images": {
        "count": len(bodies), "median_size": np.median(sizes, axis=0).astype(int).tolist(),
        "median_bytes": int(np.median([len(body) for body in bodies]))}}

    rows, stage_rows = [], []
    for name in args.architectures.split(","):
        if name not in ARCHITECTURES:
            fail(f"unknown architecture {name!r} (one of {', '.join(ARCHITECTURES)})")
        with tempfile.TemporaryDirectory() as folder:
            model = handler.model_fn(str(build_model(name, Path(folder))))
        times = time_handler_and_forward(model, bodies, args.iterations, args.warmup)
        stages = time_stages(model, bodies, args.iterations)
        forward, full = milliseconds(times["forward"], 50), milliseconds(times["handler"], 50)
        overhead = (full - forward) / forward
        results["models"][name] = {
            "parameters": sum(p.numel() for p in model.model.parameters()),
            **{f"{kind}_p{q}_ms": milliseconds(times[kind], q) for kind in ("forward", "handler") for q in (50, 99)},
            "overhead_p50": round(overhead, 4),
            "stages_p50_ms": {stage: milliseconds(samples, 50) for stage, samples in stages.items()},
            "samples_s": times}
        entry = results["models"][name]
        rows.append({"model": name, "params (M)": f"{entry['parameters'] / 1e6:.1f}",
                     "forward p50 / p99 (ms)": f"{entry['forward_p50_ms']} / {entry['forward_p99_ms']}",
                     "handler p50 / p99 (ms)": f"{entry['handler_p50_ms']} / {entry['handler_p99_ms']}",
                     "overhead p50": f"{overhead:+.1%}", f"goal <= {OVERHEAD_GOAL:.0%}":
                         "met" if overhead <= OVERHEAD_GOAL else "missed"})
        stage_rows.append({"model": name, **{f"{stage} (ms)": ms for stage, ms in entry["stages_p50_ms"].items()}})

    info = results["machine"]
    print(f"Handler latency, batch 1, CPU: {info['cpu']}, {info['usable_cores']} usable cores, "
          f"{info['torch_threads']} torch threads, load average {info['load_average']}; {len(bodies)} JPEGs, median "
          f"{results['images']['median_size'][0]}x{results['images']['median_size'][1]}, "
          f"{results['images']['median_bytes'] // 1000} KB; {args.iterations} timed requests per model\n")
    print(markdown_table(rows))
    print("\nWhere the handler's time goes (median per stage):\n")
    print(markdown_table(stage_rows))
    print(f"\nwritten to {save_results('handler_latency', results)}")


if __name__ == "__main__":
    main()
