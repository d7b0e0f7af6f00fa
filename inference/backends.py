"""Where the forward pass runs: the PyTorch model, or the same network exported to ONNX Runtime for CPUs.

``load_backend(model, "auto")`` picks the fastest path that gives the model's own answers: on a CUDA device PyTorch;
on a CPU whichever of ONNX Runtime (when installed) and PyTorch runs a sample batch faster here, timed at start-up
(on a 2-core Xeon ONNX Runtime ran ResNet-50 about twice as fast as PyTorch's eager forward, batched or not). The
ONNX file is exported once with ``torch.onnx.export`` and cached next to the model as ``onnx/model-<hash>.onnx``
(a hash of config and weights; under ``~/.cache/bincount/onnx`` when that folder is read-only), so changed weights
never meet a stale export. Every export is checked against PyTorch before it serves (probabilities
within 1e-4 on a sample batch); when ONNX Runtime is missing, the export fails or the check does, the backend is
PyTorch, with one warning saying why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from inference.handler import CountingModel, classify

log = logging.getLogger("inference.backends")
BACKENDS = ("auto", "torch", "onnx")
TOLERANCE = 1e-4  # largest difference of a probability allowed between ONNX Runtime and PyTorch
WEIGHT_FILES = ("config.json", "*.safetensors")


class TorchBackend:
    """PyTorch's forward; on CPU in channels-last memory format, which convolutions run faster in."""

    name = "torch"

    def __init__(self, model: CountingModel):
        self.model = model
        self.channels_last = model.device.type == "cpu"
        if self.channels_last:
            model.model.to(memory_format=torch.channels_last)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.channels_last:  # the same values, laid out (N, H, W, C) in memory
            pixels = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        return classify(self.model, pixels)


class OnnxBackend:
    """ONNX Runtime's CPU forward of an exported model; probabilities as PyTorch's softmax gives them."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))  # its own default: physical cores
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(["logits"], {"pixel_values": np.ascontiguousarray(pixels, dtype=np.float32)})
        return torch.from_numpy(logits).float().softmax(dim=-1).numpy()


def load_backend(model: CountingModel, model_dir: str | Path, choice: str = "auto", threads: int | None = None,
                 sample: np.ndarray | None = None) -> TorchBackend | OnnxBackend:
    """The backend ``choice`` names ("auto": the fastest correct one here), falling back to PyTorch with a warning."""
    if choice not in BACKENDS:
        raise ValueError(f"unknown backend {choice!r}: one of {', '.join(BACKENDS)}")
    if choice == "torch" or (choice == "auto" and (model.device.type != "cpu" or not onnxruntime_installed())):
        return TorchBackend(model)
    if model.device.type != "cpu":
        log.warning("the ONNX backend runs on CPU only; serving with PyTorch on %s", model.device)
        return TorchBackend(model)
    try:
        backend = OnnxBackend(export_onnx(model, model_dir, sample), threads)
        check_against_torch(backend, model, sample)
    except Exception as error:  # noqa: BLE001 - any failure of the optional path leaves PyTorch, which works
        log.warning("ONNX Runtime path unavailable (%s); serving with PyTorch", " ".join(str(error).split())[:300])
        return TorchBackend(model)
    if choice == "onnx":
        return backend
    return faster(backend, TorchBackend(model), pixels=sample if sample is not None else sample_pixels(model))


def faster(*backends: TorchBackend | OnnxBackend, pixels: np.ndarray) -> TorchBackend | OnnxBackend:
    """The backend with the shortest time for a batch (best of three, after one warm-up pass)."""
    times = {}
    for backend in backends:
        backend(pixels)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            backend(pixels)
            runs.append(time.perf_counter() - start)
        times[backend.name] = min(runs)
    log.info("forward of %d images: %s", len(pixels), ", ".join(f"{n} {t * 1000:.1f} ms" for n, t in times.items()))
    return min(backends, key=lambda backend: times[backend.name])


def onnxruntime_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def weights_hash(model_dir: str | Path) -> str:
    """A short hash of the model's config and weights, which names its ONNX export."""
    digest = hashlib.sha256()
    files = sorted({path for pattern in WEIGHT_FILES for path in Path(model_dir).glob(pattern)})
    if not any(path.suffix == ".safetensors" for path in files):
        raise FileNotFoundError(f"no safetensors weights in {model_dir}")
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as file:
            while chunk := file.read(2**22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def onnx_path(model_dir: str | Path) -> Path:
    """Where the export of these weights lives: beside the model if that folder is writable, else in the cache."""
    name = f"model-{weights_hash(model_dir)}.onnx"
    beside = Path(model_dir) / "onnx"
    if os.access(model_dir, os.W_OK) or (beside / name).is_file():
        return beside / name
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bincount" / "onnx" / name


class Logits(torch.nn.Module):
    """The classifier as a function of pixel values alone, returning logits: what the ONNX graph computes."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def export_onnx(model: CountingModel, model_dir: str | Path, sample: np.ndarray | None = None) -> Path:
    """The cached ONNX export of the model (exported now if missing), with a dynamic batch size."""
    path = onnx_path(model_dir)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.from_numpy(sample if sample is not None else sample_pixels(model))[:2].contiguous()
    log.info("exporting the model to ONNX once: %s", path)
    logging.getLogger("onnxscript").setLevel(logging.WARNING)  # its optimiser logs every pass
    wrapper = Logits(model.model).eval()  # export restores the previous mode afterwards: eval stays eval
    with tempfile.TemporaryDirectory(dir=path.parent) as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        staged = Path(folder) / path.name
        torch.onnx.export(wrapper, (example.contiguous(),), str(staged), input_names=["pixel_values"],
                          output_names=["logits"], dynamo=True, external_data=False,
                          dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1, max=1024)}})
        os.replace(staged, path)  # whole or not at all, even with several workers exporting at once
    model.model.eval()
    return path


def sample_pixels(model: CountingModel, count: int = 3) -> np.ndarray:
    """A fixed batch in the model's input shape and value range, for export and for the check."""
    from PIL import Image

    from inference.handler import pixel_values

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) for _ in range(count)]
    return pixel_values(model, images)


def check_against_torch(backend: OnnxBackend, model: CountingModel, sample: np.ndarray | None = None) -> None:
    """Refuse an export whose probabilities differ from PyTorch's by more than TOLERANCE on a sample batch."""
    pixels = sample if sample is not None else sample_pixels(model)
    difference = float(np.abs(backend(pixels) - classify(model, pixels)).max())
    if not difference <= TOLERANCE:
        raise ValueError(f"the ONNX export differs from PyTorch by {difference:.2g} (> {TOLERANCE}) on a sample")
