"""The serving handler in-process: every content type, JSON batches, verify mode and every kind of bad input."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from inference import handler
from inference.handler import BadRequest, CountingModel
from tests.conftest import make_tiny_model

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


def test_large_jpegs_decode_at_reduced_scale_but_never_below_what_the_processor_needs(model):
    image = handler.open_image(image_bytes(size=(2000, 1600)), "body", 40_000_000)
    decoded = handler.decode_image(image, "body", model.min_edge)
    assert model.min_edge <= min(decoded.size) and decoded.size[0] < 2000


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
