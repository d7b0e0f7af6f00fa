"""The local server as a user runs it: `python -m inference.serve` in its own process, spoken to over HTTP."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from inference.serve import make_server
from tests.conftest import ROOT, python_env
from tests.test_handler import b64, bomb, image_bytes, truncated_jpeg

MAX_BODY_BYTES = 1_000_000


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    def request(self, method: str, path: str, body: bytes | str | None = None, **headers: str) -> tuple[int, object]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
            response = connection.getresponse()
            assert response.getheader("Content-Type") == "application/json"
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def invoke(self, body: bytes | str, content_type: str, **headers: str) -> tuple[int, object]:
        return self.request("POST", "/invocations", body, Content_Type=content_type, **headers)


def launch(model_dir: Path, log: Path, *args: str) -> Server:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "inference.serve", "--model", str(model_dir), "--port", str(port), *args]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=python_env(OMP_NUM_THREADS="1"),  # see test_handler
                                   stdout=out, stderr=subprocess.STDOUT)
    return Server(process, port, log)


def wait_until_serving(server: Server) -> Server:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            if server.request("GET", "/ping")[0] == 200:
                return server
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"server did not come up:\n{server.log.read_text()}")


@pytest.fixture(scope="module")
def servers(tiny_model_dir, tmp_path_factory) -> tuple[Server, Server]:
    """Two servers started side by side, as start-up is most of this file's time: one to talk to, one to stop."""
    folder = tmp_path_factory.mktemp("serve")
    pair = (launch(tiny_model_dir, folder / "serve.log", "--max_body_bytes", str(MAX_BODY_BYTES)),
            launch(tiny_model_dir, folder / "stopped.log"))
    try:
        yield tuple(wait_until_serving(server) for server in pair)
    finally:
        for server in pair:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()


@pytest.fixture(scope="module")
def server(servers) -> Server:
    return servers[0]


def assert_counts(result: object) -> None:
    assert isinstance(result, dict)
    assert list(result["probabilities"]) == [str(i) for i in range(6)]
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-4
    assert result["count"] in range(6) and 0 <= result["expected_count"] <= 5


def test_ping_answers_once_the_model_is_loaded(server):
    assert server.request("GET", "/ping") == (200, {"status": "healthy"})


@pytest.mark.parametrize("content_type, format", [
    ("image/jpeg", "JPEG"),
    ("image/jpeg; charset=binary", "JPEG"),
    ("image/png", "PNG"),
    ("application/x-image", "JPEG"),
    ("application/octet-stream", "PNG"),
])
def test_an_image_body_of_each_content_type_is_counted(server, content_type, format):
    status, result = server.invoke(image_bytes(format), content_type, Accept="application/json")
    assert status == 200
    assert_counts(result)


def test_a_json_batch_is_verified_image_by_image(server):
    body = json.dumps({"inputs": [b64(image_bytes(seed=seed)) for seed in range(3)],
                       "parameters": {"expected_quantity": [0, 2, 7], "top_k": 3}})
    status, results = server.invoke(body, "application/json")
    assert status == 200 and len(results) == 3
    for result, quantity in zip(results, [0, 2, 7]):
        assert_counts(result)
        assert result["expected_quantity"] == quantity and len(result["top_k"]) == 3
    assert results[0]["verdict"] in {"match", "mismatch", "uncertain"} and results[0]["match_probability"] is not None
    assert results[2]["verdict"] == "uncertain" and results[2]["match_probability"] is None


def json_body(inputs: object, **parameters: object) -> str:
    return json.dumps({"inputs": inputs, "parameters": parameters})


BAD_REQUESTS = {
    "empty body": (b"", "image/jpeg", {}, 400, "empty"),
    "unsupported content type": (b"hello", "text/plain", {}, 415, "Content-Type"),
    "not an image": (b"this is not an image", "image/jpeg", {}, 400, "not an image"),
    "truncated jpeg": (truncated_jpeg(), "image/jpeg", {}, 400, "truncated"),
    "over --max_body_bytes": (bytes(MAX_BODY_BYTES + 1), "image/jpeg", {}, 413, "over the limit"),
    "decompression bomb": (bomb(), "image/png", {}, 413, "8000x6000"),
    "invalid json": ("{inputs:", "application/json", {}, 400, "JSON"),
    "invalid base64": (json_body("@@"), "application/json", {}, 400, "base64"),
    "negative expected": (json_body(b64(image_bytes()), expected_quantity=-2), "application/json", {}, 400,
                          "non-negative"),
    "expected list too long": (json_body([b64(image_bytes())], expected_quantity=[1, 2]), "application/json", {},
                               400, "list of 1"),
    "unknown parameter": (json_body(b64(image_bytes()), batch_size=8), "application/json", {}, 400, "batch_size"),
    "accept without json": (image_bytes(), "image/jpeg", {"Accept": "text/csv"}, 406, "application/json"),
}


@pytest.mark.parametrize("body, content_type, headers, status, message", BAD_REQUESTS.values(),
                         ids=BAD_REQUESTS.keys())
def test_bad_input_is_a_4xx_json_error_and_the_server_serves_on(server, body, content_type, headers, status, message):
    answer = server.invoke(body, content_type, **headers)
    assert answer[0] == status and message in answer[1]["error"]
    assert server.invoke(image_bytes(), "image/jpeg")[0] == 200


def test_unknown_paths_and_methods_answer_json(server):
    assert server.request("GET", "/models")[0] == 404
    assert server.request("POST", "/predict", image_bytes(), Content_Type="image/jpeg")[0] == 404
    status, answer = server.request("DELETE", "/invocations")
    assert status == 501 and "DELETE" in answer["error"]


def test_a_malformed_request_is_a_json_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(b"NOT A REQUEST LINE AT ALL\r\n\r\n")
        response = connection.makefile("rb").read()
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 400") and "error" in json.loads(body)


def test_many_concurrent_clients_get_their_own_answers(server):
    good, bad = (image_bytes(), "image/jpeg"), (b"junk", "image/jpeg")
    batch = (json_body([b64(image_bytes(seed=1))] * 2, expected_quantity=[1, 3]), "application/json")
    requests = [good, bad, batch] * 8
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda request: server.invoke(*request), requests))
    for request, (status, answer) in zip(requests, answers):
        if request is bad:
            assert status == 400 and "error" in answer
        elif request is batch:
            assert status == 200 and [r["expected_quantity"] for r in answer] == [1, 3]
        else:
            assert status == 200
            assert_counts(answer)


def test_each_request_is_one_log_line_with_method_path_status_and_time(server):
    path = f"/ping?probe={uuid.uuid4().hex}"
    assert server.request("GET", path)[0] == 200
    lines = [line for line in server.log.read_text().splitlines() if path in line]
    assert len(lines) == 1 and lines[0].split()[-5:-2] == ["GET", path, "200"] and lines[0].endswith(" ms")


def test_make_server_serves_in_process(tiny_model_dir):
    server = make_server(tiny_model_dir, port=0)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        status, answer = Server(None, server.server_address[1], None).invoke(image_bytes(), "image/jpeg")
        assert status == 200
        assert_counts(answer)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_sigterm_lets_the_request_in_flight_finish_then_exits_cleanly(servers):
    server, body = servers[1], image_bytes()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as connection:
        connection.sendall(b"POST /invocations HTTP/1.0\r\nContent-Type: image/jpeg\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body[:100])
        time.sleep(1)  # the server has accepted the connection and waits for the rest of the body
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert server.process.poll() is None
        connection.sendall(body[100:])
        response = connection.makefile("rb").read()
    assert response.startswith(b"HTTP/1.0 200")
    assert server.process.wait(timeout=60) == 0
    assert server.log.read_text().rstrip().endswith("stopped")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5)
