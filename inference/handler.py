"""Count the items in bin images: the SageMaker Hugging Face inference toolkit's hooks, and the core that the local
server (``inference.serve``) and the CLI share. It ships as ``code/inference.py`` in ``model.tar.gz`` with only
``code/core/`` beside it, and runs under transformers 4.x (the container) and 5.x. The
toolkit calls ``model_fn`` once, then ``input_fn`` -> ``predict_fn`` -> ``output_fn`` per request (``HF_TASK`` unused).

Requests
    ``image/jpeg``, ``image/png``, any other ``image/*``, ``application/x-image``, ``application/octet-stream``:
    the body is one image. ``application/json``: ``{"inputs": <base64 image> | [<base64 image>, ...],
    "parameters": {"expected_quantity": n | [n or null, ...], "top_k": k, "match_threshold": t,
    "mismatch_threshold": t}}`` with every parameter optional and ``expected_quantity`` shaped like ``inputs``.

Response (``application/json``): one object per image (a single image gives one object, a list a list in order) with
``count`` (the most probable count; "K+" reads as K), ``label``, ``probabilities`` (every class, in class order),
``expected_count`` (probability-weighted; "K+" counts as K), ``top_k`` when asked, and in verify mode
``expected_quantity``, ``match_probability`` (P(exactly that many), null when the labels cannot say), ``verdict``
(match | mismatch | uncertain) and a ``reason`` when the model cannot represent the quantity. README "Serve" has an
example.

Verify mode follows ``core/verify.py`` (match / mismatch / uncertain from P(expected)). A "K+" class answers for
every quantity >= K; one the labels cannot represent is ``uncertain`` with a reason. Thresholds: the request's
``parameters``, else BINCOUNT_MATCH_THRESHOLD / BINCOUNT_MISMATCH_THRESHOLD, else the model folder's ``verify.json``,
else 0.5 / 0.1.

Errors are ``{"error": "<one line>"}`` with a 4xx status: 400 bad input (including images that are not JPEG, PNG,
WebP, BMP, GIF or TIFF, or more than 20:1 elongated), 406 Accept without JSON, 413 too large (body over
BINCOUNT_MAX_BODY_BYTES, more images than BINCOUNT_MAX_IMAGES, an image over BINCOUNT_MAX_IMAGE_PIXELS: checked from
the header, before decoding), 415 unsupported Content-Type.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import threading
from dataclasses import dataclass, field, fields, replace
from http import HTTPStatus
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

from core.cli import UserError  # shipped beside this file as code/core/
from core import verify as rule
from core.labels import class_of, counts_of
from core import preprocess

IMAGE_TYPES = ("application/x-image", "application/octet-stream")  # besides image/*
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # no decoder that runs outside programs (EPS)
MAX_ASPECT_RATIO = 20  # a resize to the processor's shortest edge would blow a 40000x10 strip up to gigabytes
JSON_TYPE = "application/json"
JSON_ACCEPTS = {"*/*", "application/*", JSON_TYPE, "application/jsonlines", "application/x-jsonlines"}
PARAMETERS = ("expected_quantity", "top_k", "match_threshold", "mismatch_threshold")
THRESHOLDS = ("match_threshold", "mismatch_threshold")


class BadRequest(UserError):
    """A request the client must fix: its HTTP status and a one-line message that is safe to send back."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = int(status)

    @property
    def body(self) -> str:
        return json.dumps({"error": str(self)})

    def carried(self, context: Any) -> BadRequest:
        """Raise it, except under the toolkit (which passes a context and would 400 any exception): there it travels
        on as a value and output_fn answers it."""
        if context is None:
            raise self
        return self


@dataclass(frozen=True)
class Settings:
    """Limits and verify thresholds; ``from_env`` reads each from BINCOUNT_<NAME> on the endpoint."""

    max_body_bytes: int = 16 * 2**20  # a JSON batch of 64 base64 ABID images fits with room to spare
    max_images: int = 64
    max_image_pixels: int = 40_000_000  # a 40 MP photo; bin cameras take well under 1 MP
    match_threshold: float = rule.BUILT_IN["match"]
    mismatch_threshold: float = rule.BUILT_IN["mismatch"]

    @classmethod
    def from_env(cls, base: Settings | None = None) -> Settings:
        """``base`` (default: the built-in values) with every BINCOUNT_<NAME> set on the endpoint applied."""
        values = {}
        for f in fields(cls):
            if (text := os.environ.get(f"BINCOUNT_{f.name.upper()}")) is not None:
                try:
                    values[f.name] = type(f.default)(text)
                except ValueError:
                    kind = "an integer" if isinstance(f.default, int) else "a number"
                    raise ValueError(f"BINCOUNT_{f.name.upper()} must be {kind}, got {text!r}") from None
        return replace(base, **values) if base else cls(**values)

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_images", "max_image_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in THRESHOLDS:
            if not 0 <= getattr(self, name) <= 1:  # also refuses NaN
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")

    def checked(self) -> Settings:
        """These settings, once the two thresholds are known to be in order (they may come from three places)."""
        rule.check(self.match_threshold, self.mismatch_threshold)
        return self


@dataclass
class CountingModel:
    """The classifier, its saved pre-processing, and what each class means as a count."""

    model: torch.nn.Module
    processor: Any
    labels: list[str]
    counts: list[int]
    device: torch.device
    defaults: Settings = field(default_factory=Settings)  # the verify thresholds of verify.json, if any
    fast: preprocess.FastProcessor | None = None  # the processor's fast copy, where it reproduces the processor
    lock: threading.Lock = field(default_factory=threading.Lock)  # one forward at a time, whatever the threads


@dataclass
class Request:
    """A checked request: its images opened (header read, not yet decoded) and its parameters resolved."""

    images: list[Image.Image]
    names: list[str]  # how errors name each image: "body" or "inputs[i]"
    single: bool  # answer one object rather than a list
    expected: list[int | None]
    top_k: int | None
    match_threshold: float | None = None  # the request's own verify thresholds, if it gave them
    mismatch_threshold: float | None = None


def model_fn(model_dir: str, context: Any = None) -> CountingModel:
    """Hook: load the saved model (safetensors only, no remote code) and processor, on the worker's GPU if any."""
    gpu = int((getattr(context, "system_properties", None) or {}).get("gpu_id") or 0)
    device = torch.device("cuda", gpu) if torch.cuda.is_available() else torch.device("cpu")
    model = AutoModelForImageClassification.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False)
    processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=False)
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    counts = counts_of(labels)  # ValueError naming the labels unless they are counts like '3' or '5+'
    saved = rule.saved(model_dir)  # ValueError naming verify.json when it is unusable
    defaults = Settings(match_threshold=saved["match"], mismatch_threshold=saved["mismatch"])
    Settings.from_env(defaults).checked()  # a misconfigured endpoint fails at start-up, not on every request
    return CountingModel(model.to(device).eval(), processor, labels, counts, device, defaults,
                         preprocess.fast_processor(processor))


def input_fn(body: bytes | bytearray | str | None, content_type: str | None, context: Any = None) -> Any:
    """Hook: check and open the request's images."""
    try:
        return parse_request(body, content_type, Settings.from_env())
    except BadRequest as error:
        return error.carried(context)

def predict_fn(data: Request | BadRequest, model: CountingModel, context: Any = None) -> Any:
    """Hook: one batched forward pass for every image of the request."""
    if isinstance(data, BadRequest):
        return data
    try:
        return predict(model, data)
    except BadRequest as error:
        return error.carried(context)


def output_fn(prediction: Any, accept: str | None, context: Any = None) -> str:
    """Hook: the JSON response; under the toolkit a rejected request becomes its status and our error body."""
    try:
        if isinstance(prediction, BadRequest):
            raise prediction
        return encode_response(prediction, accept)
    except BadRequest as error:
        if context is None:
            raise
        context.set_response_status(error.status, HTTPStatus(error.status).phrase)
        return error.body


def parse_request(body: bytes | bytearray | str | None, content_type: str | None, settings: Settings) -> Request:
    """Check the body against the limits, open its images (headers only) and resolve the parameters."""
    body = body.encode() if isinstance(body, str) else bytes(body or b"")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != JSON_TYPE and not media_type.startswith("image/") and media_type not in IMAGE_TYPES:
        raise BadRequest(f"unsupported Content-Type {content_type!r}: send an image (image/*, {', '.join(IMAGE_TYPES)})"
                         f" or {JSON_TYPE}", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
    if not body:
        raise BadRequest("empty body")
    if len(body) > settings.max_body_bytes:
        raise BadRequest(f"body is {len(body)} bytes, over the limit of {settings.max_body_bytes}",
                         HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    if media_type != JSON_TYPE:
        image = open_image(body, "body", settings.max_image_pixels)
        return Request([image], ["body"], True, [None], None)

    try:
        document = json.loads(body)
    except RecursionError:
        raise BadRequest("body is not valid JSON: nested too deeply") from None
    except ValueError as error:  # also UnicodeDecodeError, and integers longer than Python converts
        raise BadRequest(f"body is not valid JSON: {' '.join(str(error).split())}") from None
    if not isinstance(document, dict) or "inputs" not in document:
        raise BadRequest('a JSON body is an object {"inputs": ..., "parameters": {...}}')
    if unknown := sorted(set(document) - {"inputs", "parameters"}):
        raise BadRequest(f"unknown field(s) {unknown}: a JSON body has 'inputs' and optional 'parameters'")
    inputs = document["inputs"]
    single = isinstance(inputs, str)
    encoded = [inputs] if single else inputs
    if not isinstance(encoded, list) or not encoded:
        raise BadRequest("inputs must be a base64 image or a non-empty list of them")
    if len(encoded) > settings.max_images:
        raise BadRequest(f"{len(encoded)} images in one request, over the limit of {settings.max_images}",
                         HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    names = ["inputs"] if single else [f"inputs[{i}]" for i in range(len(encoded))]
    images = [open_image(decode_base64(text, name), name, settings.max_image_pixels)
              for text, name in zip(encoded, names)]
    expected, top_k, thresholds = parse_parameters(document.get("parameters"), len(images), single)
    return Request(images, names, single, expected, top_k, **thresholds)


def decode_base64(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise BadRequest(f"{name} must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{name} is not valid base64") from None
    if not data:
        raise BadRequest(f"{name} is empty")
    return data


def open_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Read the image header only, so a decompression bomb is refused before any pixel is decoded."""
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as error:
        raise BadRequest(f"{name}: {error}", HTTPStatus.REQUEST_ENTITY_TOO_LARGE) from None
    except (OSError, SyntaxError, ValueError):
        raise BadRequest(f"{name} is not an image ({', '.join(IMAGE_FORMATS)})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadRequest(f"{name} is {width}x{height} pixels, over the limit of {max_pixels}",
                         HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise BadRequest(f"{name} is {width}x{height} pixels, more elongated than {MAX_ASPECT_RATIO}:1")
    return image


def parse_parameters(parameters: Any, n_images: int, single: bool
                     ) -> tuple[list[int | None], int | None, dict[str, float]]:
    """Check the JSON parameters: (expected quantity per image, top_k, the request's own verify thresholds)."""
    parameters = {} if parameters is None else parameters
    if not isinstance(parameters, dict):
        raise BadRequest("parameters must be an object")
    if unknown := sorted(set(parameters) - set(PARAMETERS)):
        raise BadRequest(f"unknown parameter(s) {unknown}: allowed are {list(PARAMETERS)}")

    expected = parameters.get("expected_quantity")
    if single:
        expected = [expected]
    elif expected is None:
        expected = [None] * n_images
    elif not isinstance(expected, list) or len(expected) != n_images:
        raise BadRequest(f"expected_quantity must be a list of {n_images} counts (or nulls), one per image")
    if any(q is not None and not _is_count(q) for q in expected):
        raise BadRequest("expected_quantity must be a non-negative integer")

    top_k = parameters.get("top_k")
    if top_k is not None and not (_is_count(top_k) and top_k >= 1):
        raise BadRequest("top_k must be a positive integer")

    thresholds = {name: parameters[name] for name in THRESHOLDS if name in parameters}
    if any(isinstance(value, bool) or not isinstance(value, (int, float)) for value in thresholds.values()):
        raise BadRequest("match_threshold and mismatch_threshold must be numbers")
    try:
        replace(Settings(), **thresholds)
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return expected, top_k, thresholds


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def predict(model: CountingModel, request: Request, forward: Any = None) -> dict | list[dict]:
    """Decode, pre-process and classify every image of the request in one forward pass (of ``forward``, pixels to
    probabilities, when given: another backend)."""
    verdicts = thresholds(model, request)  # a crossed pair is refused before any work
    pixels = prepare(model, request)
    return answer(model, request, forward(pixels) if forward else classify(model, pixels), verdicts)


def prepare(model: CountingModel, request: Request) -> np.ndarray:
    """The request's images decoded and pre-processed: the float32 batch (N, 3, H, W) the model takes."""
    return pixel_values(model, [decode_image(image, name) for image, name in zip(request.images, request.names)])


def pixel_values(model: CountingModel, images: list[Image.Image]) -> np.ndarray:
    """The saved processor's output: from its fast copy where that reproduces it, else from the processor."""
    return preprocess.pixel_values(images, model.processor, model.fast)


def classify(model: CountingModel, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities (N, classes) from one forward pass of the PyTorch model."""
    with model.lock, torch.inference_mode():
        logits = model.model(pixel_values=torch.from_numpy(pixels).to(model.device)).logits
    return logits.float().softmax(dim=-1).cpu().numpy()


def thresholds(model: CountingModel, request: Request) -> tuple[float, float]:
    """(match, mismatch) thresholds: the request's, else the endpoint's, else verify.json's, else 0.5 / 0.1."""
    given = {name: getattr(request, name) for name in THRESHOLDS if getattr(request, name) is not None}
    try:
        settings = replace(Settings.from_env(model.defaults), **given).checked()
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return settings.match_threshold, settings.mismatch_threshold


def answer(model: CountingModel, request: Request, probabilities: np.ndarray, verdicts: tuple[float, float]
           ) -> dict | list[dict]:
    """The request's answer from its images' probabilities (see the module docstring for the schema)."""
    results = [describe(model, p, quantity, request.top_k, verdicts)
               for p, quantity in zip(probabilities, request.expected)]
    return results[0] if request.single else results


def decode_image(image: Image.Image, name: str) -> Image.Image:
    """Decode to RGB at full scale: a reduced-scale JPEG decode (``Image.draft``) is faster, but on real bins it lands
    up to 0.9 away from the processor's output after normalisation, so answers would no longer be the model's."""
    try:
        return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise BadRequest(f"{name} is corrupt or truncated ({error})") from None


def describe(model: CountingModel, probabilities: np.ndarray, quantity: int | None, top_k: int | None,
             verdicts: tuple[float, float]) -> dict:
    """One image's answer (see the module docstring for the schema)."""
    best = int(probabilities.argmax())
    result: dict[str, Any] = {
        "count": model.counts[best],
        "label": model.labels[best],
        "probabilities": {label: round(float(p), 6) for label, p in zip(model.labels, probabilities)},
        "expected_count": round(float(probabilities @ np.array(model.counts, dtype=np.float64)), 6),
    }
    if top_k is not None:
        ranked = np.argsort(-probabilities, kind="stable")[:top_k]
        result["top_k"] = [{"label": model.labels[i], "count": model.counts[i],
                            "probability": round(float(probabilities[i]), 6)} for i in ranked]
    if quantity is not None:
        result.update(verify(model, probabilities, quantity, *verdicts))
    return result


def verify(model: CountingModel, probabilities: np.ndarray, quantity: int, match_threshold: float,
           mismatch_threshold: float) -> dict:
    """The verdict on an expected quantity from the probability the bin holds exactly that many."""
    index = class_of(quantity, model.labels)
    if index is None:
        return {"expected_quantity": quantity, "match_probability": None, "verdict": "uncertain",
                "reason": f"the model's classes {model.labels} cannot represent {quantity} items"}
    p = float(probabilities[index])
    return {"expected_quantity": quantity, "match_probability": round(p, 6),
            "verdict": rule.verdict(p, match_threshold, mismatch_threshold)}


def encode_response(prediction: dict | list[dict], accept: str | None) -> str:
    """Serialise as JSON, which is all this endpoint speaks (one line, so it is also a JSON Lines record)."""
    accepted = {part.split(";")[0].strip().lower() for part in (accept or "*/*").split(",")}
    if not accepted & JSON_ACCEPTS:
        raise BadRequest(f"cannot answer in {accept!r}: responses are {JSON_TYPE}", HTTPStatus.NOT_ACCEPTABLE)
    return json.dumps(prediction)
