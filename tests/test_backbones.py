"""Every backbone family shipped in train/configs/ is proven end to end: trained by train.run from config (no
downloads), also with a frozen backbone, served by ``pipeline("image-classification")`` with every count and by the
endpoint handler (which agree), and loaded by the inference container's transformers 4.51 with the same answers.

The six families the project documents (ResNet, ViT, EfficientNet, ConvNeXt, Swin, DeiT) run in the default suite
(the frozen backbone for EfficientNet, the seed's recipe, and ViT); the further cheap ones are marked slow.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess

import pytest
import torch
from PIL import Image

import train.model
from inference import handler
from tests.conftest import ROOT, TINY_CONFIGS
from train.run import main as train_main

CONTAINER_PYTHON = ROOT / ".venv-container" / "bin" / "python"
FAMILIES = {"tiny-resnet": "resnet", "tiny-vit": "vit", "tiny-efficientnet": "efficientnet",
            "tiny-convnext": "convnext", "tiny-swin": "swin", "tiny-deit": "deit"}
MORE_FAMILIES = {"tiny-mobilenet-v2": "mobilenet_v2", "tiny-regnet": "regnet", "tiny-dinov2": "dinov2",
                 "tiny-beit": "beit"}
MATRIX = [*FAMILIES, *(pytest.param(arch, marks=pytest.mark.slow) for arch in MORE_FAMILIES)]
# The frozen-backbone run: the seed's recipe (EfficientNet) and one transformer in the default suite, the rest slow.
FROZEN = [arch if arch in ("tiny-efficientnet", "tiny-vit") else pytest.param(arch, marks=pytest.mark.slow)
          for arch in (*FAMILIES, *MORE_FAMILIES)]
NAMES = [str(i) for i in range(6)]


def bin_image(seed: int = 0) -> bytes:
    """A PNG (decoded exactly the same way by every path, unlike a JPEG's draft mode)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(240, 320, 3, generator=generator) * 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory, one_torch_thread):
    """Train one architecture once per module (in-process: a subprocess per family would cost more than the run)."""
    cache: dict[tuple[str, bool], tuple] = {}

    def get(arch: str, freeze: bool = False):
        if (arch, freeze) not in cache:
            out = tmp_path_factory.mktemp(f"{arch}-{'frozen' if freeze else 'full'}")
            initial = {}
            load = train.model.load

            def recording_load(args, names):  # the weights the run starts from
                model, processor = load(args, names)
                initial.update({k: v.detach().clone() for k, v in model.named_parameters()})
                return model, processor

            train.model.load = recording_load
            try:
                code = train_main(["--dataset", str(tiny_dataset), "--model_name_or_path", str(TINY_CONFIGS / arch),
                                   "--output_dir", str(out), "--num_train_epochs", "1",
                                   "--per_device_train_batch_size", "8", "--learning_rate", "5e-3",
                                   "--dataloader_num_workers", "0", "--max_train_samples", "24",
                                   "--max_eval_samples", "8", "--logging_steps", "1", "--seed", "3",
                                   "--save_strategy", "no", "--load_best_model_at_end", "false",
                                   *(["--freeze_backbone"] if freeze else [])])
            finally:
                train.model.load = load
            assert code == 0
            cache[arch, freeze] = out, initial
        return cache[arch, freeze]

    return get


@pytest.mark.parametrize("arch", MATRIX)
def test_trained_from_config_and_served_by_pipeline_and_handler(trained, arch):
    from transformers import pipeline

    out, _ = trained(arch)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == (FAMILIES | MORE_FAMILIES)[arch]
    assert config["id2label"] == dict(zip(map(str, range(6)), NAMES))
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()

    image = Image.open(io.BytesIO(bin_image()))
    every = pipeline("image-classification", model=str(out), top_k=len(NAMES))(image)
    assert sorted(r["label"] for r in every) == NAMES
    assert sum(r["score"] for r in every) == pytest.approx(1, abs=1e-4)

    counter = handler.model_fn(str(out))
    answer = handler.predict(counter, handler.parse_request(
        json.dumps({"inputs": base64.b64encode(bin_image()).decode(),
                    "parameters": {"expected_quantity": 2}}), "application/json", handler.Settings()))
    assert answer["probabilities"] == pytest.approx({r["label"]: r["score"] for r in every}, abs=1e-4)
    assert answer["verdict"] in {"match", "mismatch", "uncertain"} and answer["expected_quantity"] == 2


@pytest.mark.parametrize("arch", FROZEN)
def test_frozen_backbone_trains_only_the_head(trained, arch):
    out, initial = trained(arch, freeze=True)
    model = handler.model_fn(str(out)).model  # reloaded: saved weight names can differ from the module's
    final = dict(model.named_parameters())
    head = [name for name in initial if name.startswith("classifier")]
    assert head and len(head) < len(initial) and set(final) == set(initial)
    for name, before in initial.items():
        changed = not torch.equal(before, final[name].detach())
        assert changed == (name in head), f"{name} {'changed' if changed else 'did not change'}"


CONTAINER_SCRIPT = """
import json, sys, transformers
sys.path[:0] = [sys.argv[1] + "/inference", sys.argv[1]]  # the handler and the project modules it ships with
import handler
image = open(sys.argv[2], "rb").read()
answers = {}
for model_dir in sys.argv[3:]:
    request = handler.parse_request(image, "image/png", handler.Settings())
    answers[model_dir] = handler.predict(handler.model_fn(model_dir), request)
print(json.dumps({"version": transformers.__version__, "answers": answers}))
"""


def check_in_container(folders: list, tmp_path) -> None:
    """One container process loads every model folder with the handler; its answers must equal ours."""
    if not CONTAINER_PYTHON.exists():
        pytest.skip(f"no container stand-in at {CONTAINER_PYTHON} (make venv creates it)")
    (tmp_path / "bin.png").write_bytes(bin_image(1))
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}  # the container's libraries only
    run = subprocess.run([str(CONTAINER_PYTHON), "-c", CONTAINER_SCRIPT, str(ROOT),
                          str(tmp_path / "bin.png"), *map(str, folders)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    container = json.loads(run.stdout.strip().splitlines()[-1])
    assert container["version"].startswith("4.")
    for folder in folders:
        here = handler.predict(handler.model_fn(str(folder)),
                               handler.parse_request(bin_image(1), "image/png", handler.Settings()))
        there = container["answers"][str(folder)]
        assert there["probabilities"] == pytest.approx(here["probabilities"], abs=1e-4), folder.name
        assert there["count"] == here["count"]


def test_the_six_families_load_in_the_inference_container_with_the_same_answers(trained, tmp_path):
    check_in_container([trained(arch)[0] for arch in FAMILIES], tmp_path)


@pytest.mark.slow
def test_more_families_load_in_the_inference_container_with_the_same_answers(trained, tmp_path):
    check_in_container([trained(arch)[0] for arch in MORE_FAMILIES], tmp_path)
