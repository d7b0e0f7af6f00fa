"""The serving handler in-process: every content type, JSON batches, verify mode and every kind of bad input."""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from inference import handler
from inference.handler import BadRequest, CountingModel
from tests.conftest import make_tiny_model

JSON = "application/json"
FIXED = [0.02, 0.03, 0.05, 0.6, 0.25, 0.05]  # what the fixed model answers for any image, classes "0".."5"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def image_bytes(format: str = "JPEG", size: tuple[int, int] = (320, 240), seed: int = 0) -> bytes:
    """A noisy image, so different seeds give the model different inputs."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8).numpy()
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=format)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def answer(model: CountingModel, body: bytes | bytearray | str, content_type: str | None,
           accept: str | None = "application/json") -> Any:
    """The hooks the way the toolkit chains them, without its context: a bad request raises."""
    return json.loads(handler.output_fn(handler.predict_fn(handler.input_fn(body, content_type), model), accept))


def ask_json(model: CountingModel, inputs: object, **parameters: object) -> Any:
    return answer(model, json.dumps({"inputs": inputs, "parameters": parameters}), "application/json")


def fixed(model: CountingModel, probabilities: list[float]) -> CountingModel:
    """Make the model give these probabilities for any image: a zero last layer whose bias is their log."""
    head = [module for module in model.model.modules() if isinstance(module, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(probabilities).log())
    return model


def assert_counts_answer(result: dict, model: CountingModel) -> None:
    probabilities = result["probabilities"]
    assert list(probabilities) == model.labels
    assert math.isclose(sum(probabilities.values()), 1, abs_tol=1e-4)
    assert result["label"] == max(probabilities, key=probabilities.get)
    assert result["count"] == model.counts[model.labels.index(result["label"])]
    mean = sum(p * c for p, c in zip(probabilities.values(), model.counts))
    assert math.isclose(result["expected_count"], mean, abs_tol=1e-4)


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> CountingModel:
    return handler.model_fn(str(tiny_model_dir))


@pytest.fixture(scope="module")
def fixed_model(tiny_model_dir) -> CountingModel:
    return fixed(handler.model_fn(str(tiny_model_dir)), FIXED)


@pytest.mark.parametrize("content_type, format, as_bytearray", [
    ("image/jpeg", "JPEG", False),
    ("image/jpeg; charset=binary", "JPEG", False),
    ("image/png", "PNG", False),
    ("image/webp", "WEBP", False),
    ("application/x-image", "JPEG", False),
    ("application/octet-stream", "JPEG", True),
])
def test_raw_image_bodies_answer_one_object_with_every_count(model, content_type, format, as_bytearray):
    body = image_bytes(format)
    result = answer(model, bytearray(body) if as_bytearray else body, content_type)
    assert isinstance(result, dict) and "verdict" not in result and "top_k" not in result
    assert_counts_answer(result, model)


def test_real_abid_bins_in_one_json_batch_with_their_expected_quantities(model, abid_sample: Path):
    images = sorted((abid_sample / "bin-images").glob("*.jpg"))[:8]
    expected = [json.loads((abid_sample / "metadata" / f"{p.stem}.json").read_text())["EXPECTED_QUANTITY"]
                for p in images]
    results = ask_json(model, [b64(p.read_bytes()) for p in images], expected_quantity=expected)
    assert len(results) == len(images)
    for result, quantity in zip(results, expected):
        assert_counts_answer(result, model)
        assert result["expected_quantity"] == quantity and result["verdict"] in {"match", "mismatch", "uncertain"}
    alone = answer(model, images[0].read_bytes(), "image/jpeg")
    assert alone["probabilities"] == pytest.approx(results[0]["probabilities"], abs=1e-4)


def test_json_batch_answers_each_image_as_if_sent_alone(model):
    bodies = [image_bytes(seed=seed) for seed in range(3)]
    batch = ask_json(model, [b64(body) for body in bodies])
    assert isinstance(batch, list) and len(batch) == 3
    for body, result in zip(bodies, batch):
        single = ask_json(model, b64(body))
        assert isinstance(single, dict)
        assert single["probabilities"] == pytest.approx(result["probabilities"], abs=1e-4)


def test_json_comes_as_text_or_bytes_with_or_without_a_charset(model):
    document = json.dumps({"inputs": b64(image_bytes())})
    as_text = answer(model, document, "application/json")  # the toolkit decodes a plain application/json body
    as_bytes = answer(model, document.encode(), "application/json; charset=utf-8")
    assert as_text == as_bytes
    assert_counts_answer(as_text, model)


def test_top_k_lists_the_most_probable_counts_in_order(model):
    result = ask_json(model, b64(image_bytes()), top_k=2)
    ranked = sorted(result["probabilities"].items(), key=lambda item: -item[1])[:2]
    assert [(entry["label"], entry["probability"]) for entry in result["top_k"]] == ranked
    assert len(ask_json(model, b64(image_bytes()), top_k=100)["top_k"]) == len(model.labels)


@pytest.mark.parametrize("quantity, verdict", [(3, "match"), (0, "mismatch"), (4, "uncertain")])
def test_verify_mode_gives_the_probability_of_the_expected_quantity_and_a_verdict(fixed_model, quantity, verdict):
    result = ask_json(fixed_model, b64(image_bytes()), expected_quantity=quantity)
    assert result["expected_quantity"] == quantity
    assert result["match_probability"] == pytest.approx(FIXED[quantity], abs=1e-4)
    assert result["verdict"] == verdict


def test_verify_thresholds_come_from_the_environment_and_each_request(fixed_model, monkeypatch):
    image = b64(image_bytes())
    monkeypatch.setenv("BINCOUNT_MATCH_THRESHOLD", "0.2")
    assert ask_json(fixed_model, image, expected_quantity=4)["verdict"] == "match"
    assert ask_json(fixed_model, image, expected_quantity=3, match_threshold=0.7)["verdict"] == "uncertain"
    assert ask_json(fixed_model, image, expected_quantity=4, match_threshold=0.9,
                    mismatch_threshold=0.3)["verdict"] == "mismatch"


def test_batch_verifies_only_the_images_with_an_expected_quantity(fixed_model):
    image = b64(image_bytes())
    first, second = ask_json(fixed_model, [image, image], expected_quantity=[3, None])
    assert first["verdict"] == "match" and "verdict" not in second


def test_a_plus_class_answers_for_every_quantity_from_k_up(tmp_path):
    model = handler.model_fn(str(make_tiny_model(tmp_path / "m", labels=["0", "1", "2", "3", "4", "5+"])))
    fixed(model, [0.02, 0.03, 0.05, 0.1, 0.2, 0.6])
    result = ask_json(model, b64(image_bytes()), expected_quantity=9)
    assert result["match_probability"] == pytest.approx(0.6, abs=1e-4) and result["verdict"] == "match"
    assert result["count"] == 5 and result["label"] == "5+"
    assert ask_json(model, b64(image_bytes()), expected_quantity=5)["verdict"] == "match"


def test_a_quantity_the_model_cannot_represent_is_uncertain_with_a_reason(tmp_path):
    model = handler.model_fn(str(make_tiny_model(tmp_path / "m", labels=["1", "2", "3", "4", "5"])))
    for quantity in (0, 6):
        result = ask_json(model, b64(image_bytes()), expected_quantity=quantity)
        assert result["verdict"] == "uncertain" and result["match_probability"] is None
        assert str(quantity) in result["reason"]
    assert_counts_answer(result, model)
    assert result["count"] >= 1 and result["expected_count"] >= 1


def test_jpegs_decode_at_full_scale(model):
    image = handler.decode_image(handler.open_image(image_bytes(size=(2000, 1600)), "body", 40_000_000), "body")
    assert image.size == (2000, 1600) and image.mode == "RGB"


def bomb() -> bytes:
    """A 48-megapixel PNG of a few kilobytes."""
    out = io.BytesIO()
    Image.new("1", (8000, 6000)).save(out, format="PNG")
    return out.getvalue()


def truncated_jpeg() -> bytes:
    data = image_bytes()
    return data[: len(data) // 2]


def json_body(inputs: object = None, **parameters: object) -> str:
    return json.dumps({"inputs": b64(image_bytes()) if inputs is None else inputs, "parameters": parameters})


BAD_REQUESTS = {
    "empty body": (b"", "image/jpeg", 400, "empty"),
    "unsupported content type": (b"hello", "text/plain", 415, "Content-Type"),
    "no content type": (b"hello", None, 415, "Content-Type"),
    "not an image": (b"this is not an image", "image/jpeg", 400, "not an image"),
    "truncated jpeg": (truncated_jpeg(), "image/jpeg", 400, "truncated"),
    "a format beyond bin photos": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "image/eps", 400,
                                   "not an image"),
    "a strip no processor should resize": (image_bytes(size=(2100, 100)), "image/jpeg", 400, "elongated"),
    "decompression bomb": (bomb(), "image/png", 413, "8000x6000"),
    "invalid json": ("{inputs:", "application/json", 400, "not valid JSON"),
    "json nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, "application/json", 400, "nested too deeply"),
    "inputs nested 100,000 deep": ('{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}", "application/json", 400,
                                   "not valid JSON"),
    "an integer too long to convert": ('{"inputs": "x", "parameters": {"top_k": ' + "9" * 5000 + "}}",
                                       "application/json", 400, "not valid JSON"),
    "json not utf-8": (b'{"inputs": "\xff\xfe"}', "application/json", 400, "not valid JSON"),
    "json without inputs": ('{"parameters": {}}', "application/json", 400, "inputs"),
    "unknown field": ('{"inputs": [], "model": "x"}', "application/json", 400, "model"),
    "empty inputs": (json_body([]), "application/json", 400, "non-empty"),
    "invalid base64": (json_body("@@not base64@@"), "application/json", 400, "base64"),
    "base64 of no image": (json_body(b64(b"plain text")), "application/json", 400, "not an image"),
    "negative expected": (json_body(expected_quantity=-1), "application/json", 400, "non-negative integer"),
    "fractional expected": (json_body(expected_quantity=2.5), "application/json", 400, "non-negative integer"),
    "string expected": (json_body(expected_quantity="3"), "application/json", 400, "non-negative integer"),
    "expected list too short": (json_body([b64(image_bytes())] * 2, expected_quantity=[1]), "application/json", 400,
                                "list of 2"),
    "unknown parameter": (json_body(threshold=0.5), "application/json", 400, "threshold"),
    "top_k zero": (json_body(top_k=0), "application/json", 400, "top_k"),
    "thresholds crossed": (json_body(match_threshold=0.2, mismatch_threshold=0.4), "application/json", 400,
                           "mismatch_threshold"),
    "threshold under the default mismatch": (json_body(expected_quantity=1, match_threshold=0.05), "application/json",
                                             400, "mismatch_threshold"),
    "threshold not a probability": (json_body(match_threshold=1.5), "application/json", 400, "between 0 and 1"),
}


@pytest.mark.parametrize("body, content_type, status, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_input_is_a_4xx_with_a_one_line_json_message(model, body, content_type, status, message):
    with pytest.raises(BadRequest) as caught:
        answer(model, body, content_type)
    assert caught.value.status == status
    assert "\n" not in caught.value.body and message in json.loads(caught.value.body)["error"]


@pytest.mark.parametrize("variable, body, message", [
    ("BINCOUNT_MAX_BODY_BYTES", image_bytes(), "over the limit"),
    ("BINCOUNT_MAX_IMAGES", json_body([b64(image_bytes())] * 3), "3 images"),
    ("BINCOUNT_MAX_IMAGE_PIXELS", image_bytes(), "320x240"),
])
def test_limits_set_on_the_endpoint_answer_413(model, monkeypatch, variable, body, message):
    monkeypatch.setenv(variable, "2")
    content_type = "application/json" if isinstance(body, str) else "image/jpeg"
    with pytest.raises(BadRequest, match=message) as caught:
        answer(model, body, content_type)
    assert caught.value.status == 413


def test_an_accept_type_without_json_is_406(model):
    with pytest.raises(BadRequest) as caught:
        answer(model, image_bytes(), "image/jpeg", accept="text/csv")
    assert caught.value.status == 406
    assert isinstance(answer(model, image_bytes(), "image/jpeg", accept=None), dict)


class RecordingContext:
    """The one thing the hooks use of the toolkit's request context."""

    status: tuple[int, str] | None = None

    def set_response_status(self, code: int, phrase: str) -> None:
        self.status = (code, phrase)


def test_with_a_toolkit_context_a_bad_request_is_answered_not_raised(model):
    context = RecordingContext()
    data = handler.input_fn(b"not an image", "image/jpeg", context)
    body = handler.output_fn(handler.predict_fn(data, model, context), "application/json", context)
    assert context.status == (400, "Bad Request") and "not an image" in json.loads(body)["error"]


def test_a_misconfigured_endpoint_fails_at_load(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("BINCOUNT_MATCH_THRESHOLD", "high")
    with pytest.raises(ValueError, match="BINCOUNT_MATCH_THRESHOLD"):
        handler.model_fn(str(tiny_model_dir))
    monkeypatch.setenv("BINCOUNT_MATCH_THRESHOLD", "0.05")
    with pytest.raises(ValueError, match="mismatch_threshold"):
        handler.model_fn(str(tiny_model_dir))


def test_labels_must_be_counts(tmp_path):
    with pytest.raises(ValueError, match="counts"):
        handler.model_fn(str(make_tiny_model(tmp_path / "m", labels=["empty", "some", "many"])))


def test_verify_thresholds_saved_with_the_model_apply_unless_the_endpoint_or_request_says_otherwise(
        tmp_path, monkeypatch):
    folder = make_tiny_model(tmp_path / "m")
    (folder / "verify.json").write_text(json.dumps({"match": 0.2, "mismatch": 0.01, "target_false_alarm": 0.05}))
    model = fixed(handler.model_fn(str(folder)), FIXED)
    image = b64(image_bytes())
    assert ask_json(model, image, expected_quantity=4)["verdict"] == "match"  # 0.25 >= the saved 0.2
    assert ask_json(model, image, expected_quantity=0)["verdict"] == "uncertain"  # 0.02 > the saved 0.01
    monkeypatch.setenv("BINCOUNT_MATCH_THRESHOLD", "0.3")
    assert ask_json(model, image, expected_quantity=4)["verdict"] == "uncertain"
    assert ask_json(model, image, expected_quantity=4, match_threshold=0.24)["verdict"] == "match"


def test_unusable_saved_verify_thresholds_fail_at_load(tmp_path):
    folder = make_tiny_model(tmp_path / "m")
    (folder / "verify.json").write_text(json.dumps({"match": 0.05, "mismatch": 0.1}))
    with pytest.raises(ValueError, match="verify.json"):
        handler.model_fn(str(folder))


# The pre-processing fast path and the ONNX Runtime backend, against what they replace, on real bins

ABID_REAL = Path(__file__).resolve().parents[2] / "shared" / "abid-real"


@pytest.fixture(scope="module")
def real_jpegs() -> list[bytes]:
    """Real ABID bins of every size from the development set beside the checkout (skip when it is absent)."""
    paths = sorted((ABID_REAL / "bucket" / "bin-images").glob("*.jpg"))
    if not paths:
        pytest.skip(f"real ABID images not found at {ABID_REAL}")
    return [path.read_bytes() for path in paths[::4]]


def checkpoint_processors() -> dict[str, Any]:
    """The processors of the checkpoints people fine-tune, with their saved settings."""
    from transformers import ConvNextImageProcessor, EfficientNetImageProcessor, ViTImageProcessor
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    imagenet = {"image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD}
    return {
        "microsoft/resnet-50": ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875, resample=3,
                                                      **imagenet),
        "google/vit-base-patch16-224": ViTImageProcessor(size={"height": 224, "width": 224}),
        "facebook/convnext-base-384": ConvNextImageProcessor(size={"shortest_edge": 384}, resample=3, **imagenet),
        "google/efficientnet-b0": EfficientNetImageProcessor(size={"height": 224, "width": 224}, resample=0,
                                                             include_top=False, **imagenet),
        "efficientnet, centre crop and offset": EfficientNetImageProcessor(
            size={"height": 256, "width": 256}, do_center_crop=True, crop_size={"height": 224, "width": 224},
            rescale_offset=True),
    }


@pytest.mark.parametrize("name", list(checkpoint_processors()))
def test_the_fast_path_gives_the_saved_processors_output_on_real_bins(name, real_jpegs, tmp_path):
    from transformers import AutoImageProcessor

    from core.preprocess import fast_processor

    checkpoint_processors()[name].save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    fast = fast_processor(processor)
    assert fast is not None
    for data in real_jpegs:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        expected = processor(images=[image], return_tensors="np")["pixel_values"]
        got = fast([image])
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.abs(got - expected).max() <= 0.02


@pytest.mark.parametrize("arch", ["tiny-resnet", "tiny-convnext", "tiny-efficientnet"])
def test_the_fast_path_predicts_the_same_counts_as_the_processor_on_real_bins(arch, real_jpegs, tmp_path):
    fast = handler.model_fn(str(make_tiny_model(tmp_path / "m", arch=arch)))
    assert fast.fast is not None
    slow = replace(fast, fast=None)
    request = handler.parse_request(json.dumps({"inputs": [b64(data) for data in real_jpegs]}), JSON,
                                    handler.Settings())
    with_fast, with_processor = handler.predict(fast, request), handler.predict(slow, request)
    assert [r["count"] for r in with_fast] == [r["count"] for r in with_processor]
    for a, b in zip(with_fast, with_processor):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)


def test_processors_the_fast_path_does_not_reproduce_fall_back_to_the_processor(tmp_path):
    from transformers import ConvNextImageProcessor, ViTImageProcessor

    from core.preprocess import fast_processor

    assert fast_processor(ViTImageProcessor(size={"shortest_edge": 224, "longest_edge": 300})) is None
    assert fast_processor(ConvNextImageProcessor(size={"shortest_edge": 224}, do_center_crop=True,
                                                 crop_size={"height": 200, "width": 200})) is None
    assert fast_processor(object()) is None
    model = handler.model_fn(str(make_tiny_model(tmp_path / "m", arch="tiny-beit")))
    assert model.fast is None
    assert_counts_answer(answer(model, image_bytes(), "image/jpeg"), model)


@pytest.fixture(scope="module")
def onnx_resnet(tiny_model_dir) -> tuple[Path, CountingModel, Any]:
    """The tiny ResNet with its ONNX export (exported once for this module: the exporter takes seconds)."""
    from inference.backends import load_backend

    model = handler.model_fn(str(tiny_model_dir))
    return tiny_model_dir, model, load_backend(model, tiny_model_dir, "onnx")


@pytest.mark.parametrize("arch", ["tiny-resnet", "tiny-vit"])
def test_the_onnx_backend_gives_pytorchs_probabilities_on_real_bins(arch, onnx_resnet, real_jpegs, tmp_path):
    from inference.backends import OnnxBackend, TorchBackend, load_backend

    folder, model, backend = onnx_resnet
    if arch != "tiny-resnet":
        folder = make_tiny_model(tmp_path / "m", arch=arch)
        model = handler.model_fn(str(folder))
        backend = load_backend(model, folder, "onnx")
    assert isinstance(backend, OnnxBackend) and backend.path.parent == folder / "onnx"
    request = handler.parse_request(json.dumps({"inputs": [b64(data) for data in real_jpegs]}), JSON,
                                    handler.Settings())
    pixels = handler.prepare(model, request)
    assert model.model.training is False
    expected = handler.classify(model, pixels)
    assert np.abs(backend(pixels) - expected).max() <= 1e-4
    assert np.abs(backend(pixels[:1]) - expected[:1]).max() <= 1e-4  # the batch size is dynamic
    assert np.abs(TorchBackend(model)(pixels) - expected).max() <= 1e-4  # channels-last


def test_the_onnx_export_is_cached_under_a_hash_of_the_weights(onnx_resnet, tmp_path):
    from inference.backends import load_backend, onnx_path

    folder, model, backend = onnx_resnet
    stamp = backend.path.stat().st_mtime_ns
    assert load_backend(model, folder, "onnx").path == backend.path == onnx_path(folder)
    assert backend.path.stat().st_mtime_ns == stamp  # not exported again
    other = make_tiny_model(tmp_path / "m", seed=1)
    assert onnx_path(other).name != backend.path.name  # other weights, another export


def test_without_onnx_runtime_or_with_a_failing_export_the_backend_is_pytorch_with_one_warning(
        tiny_model_dir, monkeypatch, caplog):
    from inference import backends

    model = handler.model_fn(str(tiny_model_dir))
    pixels = backends.sample_pixels(model)
    fastest = backends.load_backend(model, tiny_model_dir, "auto")  # whichever ran the sample faster here
    assert np.abs(fastest(pixels) - handler.classify(model, pixels)).max() <= 1e-4
    monkeypatch.setattr(backends, "onnxruntime_installed", lambda: False)
    assert isinstance(backends.load_backend(model, tiny_model_dir, "auto"), backends.TorchBackend)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(backends, "export_onnx", broken)
    with caplog.at_level("WARNING", logger="inference.backends"):
        backend = backends.load_backend(model, tiny_model_dir, "onnx")
    assert isinstance(backend, backends.TorchBackend)
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "exporter exploded" in warnings[0].getMessage()
    assert_counts_answer(handler.describe(model, backend(handler.prepare(model, handler.parse_request(
        image_bytes(), "image/jpeg", handler.Settings())))[0], None, None, (0.5, 0.1)), model)


def test_the_batch_cli_counts_the_same_with_the_onnx_backend(onnx_resnet, real_jpegs, tmp_path):
    from inference import predict

    folder, _, _ = onnx_resnet
    images = tmp_path / "bins"
    images.mkdir()
    for index, data in enumerate(real_jpegs[:6]):
        (images / f"{index:05d}.jpg").write_bytes(data)
    rows = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.jsonl"
        assert predict.main(["--model", str(folder), str(images), "--output", str(out), "--backend", backend]) == 0
        rows[backend] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["count"] for r in rows["onnx"]] == [r["count"] for r in rows["torch"]] and len(rows["onnx"]) == 6
    for a, b in zip(rows["onnx"], rows["torch"]):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
    assert predict.main(["--model", str(folder), str(images), "--backend", "tensorrt"]) == 2
