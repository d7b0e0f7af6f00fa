"""The real SageMaker Hugging Face inference toolkit picks up our hooks from code/inference.py.

A script in the container stand-in (.venv-container: transformers 4.x, the toolkit, multi-model-server) loads an
unpacked model.tar.gz the way an MMS worker does (its model loader instantiates the toolkit's
HuggingFaceHandlerService and initialises it with a real mms Context), then sends requests through MMS's own
``Service.predict``, whose binary answer carries exactly the status and body the endpoint would send back.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from inference import deploy, handler
from tests.conftest import ROOT
from tests.test_handler import FIXED, b64, fixed, image_bytes, truncated_jpeg

CONTAINER_PYTHON = ROOT / ".venv-container" / "bin" / "python"
MAX_BODY_BYTES = 200_000

RUNNER = '''
import base64, json, struct, sys

from mms.model_loader import ModelLoaderFactory

model_dir, requests_path, answers_path = sys.argv[1:]
service = ModelLoaderFactory.get_model_loader(model_dir).load(
    "model", model_dir, "sagemaker_huggingface_inference_toolkit.handler_service", None, 1)


def decode(message):
    """One request's answer from MMS's predict response (mms.protocol.otf_message_handler)."""
    position = 0

    def take(size):
        nonlocal position
        position += size
        return bytes(message[position - size:position])

    def integer():
        return struct.unpack("!i", take(4))[0]

    def text():
        return take(integer()).decode()

    code, note, _request_id, content_type, status, _phrase = integer(), text(), text(), text(), integer(), text()
    for _ in range(integer()):  # response headers
        text(), text()
    return {"code": code, "message": note, "status": status, "content_type": content_type, "body": text()}


answers = []
for number, request in enumerate(json.load(open(requests_path))):
    # a raw body reaches the worker as the parameter "body", the HTTP headers beside it (as MMS's frontend sends them)
    headers = [{"name": name.encode(), "value": value.encode()} for name, value in request["headers"].items()]
    body = {"name": "body", "contentType": request["headers"]["Content-Type"],
            "value": base64.b64decode(request["body"])}
    answers.append(decode(service.predict([{"requestId": str(number).encode(), "headers": headers,
                                            "parameters": [body]}])))
json.dump(answers, open(answers_path, "w"))
'''


REQUESTS = {
    "jpeg": ("image/jpeg", image_bytes()),
    "x-image": ("application/x-image", image_bytes("PNG", size=(96, 96))),
    "json batch": ("application/json", json.dumps({"inputs": [b64(image_bytes(seed=1)), b64(image_bytes(seed=2))],
                                                   "parameters": {"expected_quantity": [3, 0]}}).encode()),
    "unsupported type": ("text/csv", b"1,2,3"),
    "too large": ("image/jpeg", bytes(MAX_BODY_BYTES + 1)),
    "not an image": ("image/jpeg", b"definitely not a jpeg"),
    "truncated": ("image/jpeg", truncated_jpeg()),
    "negative expected": ("application/json", json.dumps({"inputs": b64(image_bytes()),
                                                          "parameters": {"expected_quantity": -1}}).encode()),
}


@pytest.fixture(scope="module")
def answers(tiny_model_dir, tmp_path_factory) -> dict[str, dict]:
    """Every request of REQUESTS answered by the toolkit, in one container process."""
    if not CONTAINER_PYTHON.exists():
        pytest.skip(f"no container stand-in at {CONTAINER_PYTHON} (make venv creates it)")
    work = tmp_path_factory.mktemp("toolkit")
    model_dir = work / "model"
    counter = fixed(handler.model_fn(str(tiny_model_dir)), FIXED)
    counter.model.save_pretrained(model_dir)
    counter.processor.save_pretrained(model_dir)
    for name, data in deploy.code_files().items():  # the handler and the label rule it imports, as model.tar.gz has them
        (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / name).write_bytes(data)

    requests = [{"headers": {"Content-Type": content_type, "Accept": "application/json"}, "body": b64(body)}
                for content_type, body in REQUESTS.values()]
    (work / "requests.json").write_text(json.dumps(requests))
    (work / "runner.py").write_text(RUNNER)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # the project stays out
    env.update(HF_TASK="image-classification", BINCOUNT_MAX_BODY_BYTES=str(MAX_BODY_BYTES), OMP_NUM_THREADS="1")
    run = subprocess.run([str(CONTAINER_PYTHON), "runner.py", str(model_dir), "requests.json", "answers.json"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(zip(REQUESTS, json.loads((work / "answers.json").read_text())))


def body(answer: dict) -> dict | list:
    assert answer["code"] == 200, answer["message"]  # our errors never escape as exceptions, which MMS would 400
    return json.loads(answer["body"])


@pytest.mark.parametrize("name", ["jpeg", "x-image"])
def test_an_image_is_answered_with_our_schema(answers, name):
    assert answers[name]["status"] == 200 and answers[name]["content_type"] == "application/json"
    result = body(answers[name])
    assert list(result["probabilities"]) == [str(i) for i in range(6)]
    assert result["probabilities"] == pytest.approx(dict(zip(result["probabilities"], FIXED)), abs=1e-4)
    assert result["count"] == 3 and result["expected_count"] == pytest.approx(sum(i * p for i, p in enumerate(FIXED)))


def test_a_json_batch_is_verified_with_our_thresholds(answers):
    assert answers["json batch"]["status"] == 200
    results = body(answers["json batch"])
    assert [r["expected_quantity"] for r in results] == [3, 0]
    assert [r["verdict"] for r in results] == ["match", "mismatch"]
    assert results[0]["match_probability"] == pytest.approx(FIXED[3], abs=1e-4)


@pytest.mark.parametrize("name, status, message", [
    ("unsupported type", 415, "Content-Type"),
    ("too large", 413, "over the limit"),
    ("not an image", 400, "not an image"),
    ("truncated", 400, "truncated"),
    ("negative expected", 400, "non-negative integer"),
])
def test_bad_input_comes_back_with_its_4xx_status_and_our_message(answers, name, status, message):
    assert answers[name]["status"] == status
    assert message in body(answers[name])["error"]
