"""The local server as a user runs it: `python -m inference.serve` in its own process, spoken to over HTTP.

Faults too: bad input alone, concurrent and mixed into one batch with good requests; JSON nested 100,000 deep; a full
queue; clients that disconnect mid-body or mid-batch, or send their body byte by byte; SIGTERM under load; workers.
"""

from __future__ import annotations

import http.client
import json
import re
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
from tests.test_handler import BAD_REQUESTS as HANDLER_REFUSES
from tests.test_handler import b64, bomb, image_bytes, truncated_jpeg

MAX_BODY_BYTES = 1_000_000
MAX_QUEUE = 8
WAIT_MS = 150  # long enough that requests sent together share a forward pass, even on a busy machine


@dataclass
class Server:
    process: subprocess.Popen | None
    port: int
    log: Path | None

    def request(self, method: str, path: str, body: bytes | str | None = None, **headers: str) -> tuple[int, object]:
        status, answer, _ = self.exchange(method, path, body, **headers)
        return status, answer

    def exchange(self, method: str, path: str, body: bytes | str | None = None, **headers: str
                 ) -> tuple[int, object, http.client.HTTPResponse]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
            response = connection.getresponse()
            assert response.getheader("Content-Type") == "application/json"
            return response.status, json.loads(response.read()), response
        finally:
            connection.close()

    def invoke(self, body: bytes | str, content_type: str | None, **headers: str) -> tuple[int, object]:
        if content_type is not None:
            headers["Content_Type"] = content_type
        return self.request("POST", "/invocations", body, **headers)

    def metrics(self) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain")
            return response.read().decode()
        finally:
            connection.close()

    def metric(self, name: str) -> float:
        """The sum of every sample of ``name`` (over its labels)."""
        return sum(float(line.rsplit(" ", 1)[1]) for line in self.metrics().splitlines()
                   if re.match(rf"{re.escape(name)}(\{{| )", line))


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
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            if server.request("GET", "/ping")[0] == 200:
                return server
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"server did not come up:\n{server.log.read_text()}")


@pytest.fixture(scope="module")
def servers(tiny_model_dir, tmp_path_factory) -> dict[str, Server]:
    """The servers of this file, started side by side as start-up is most of its time: one to talk to (default
    backend), one to stop with SIGTERM, one with two worker processes."""
    folder = tmp_path_factory.mktemp("serve")
    launched = {
        "main": launch(tiny_model_dir, folder / "serve.log", "--max_body_bytes", str(MAX_BODY_BYTES),
                       "--max_queue", str(MAX_QUEUE), "--max_wait_ms", str(WAIT_MS), "--body_timeout_s", "20"),
        "stopped": launch(tiny_model_dir, folder / "stopped.log", "--backend", "torch"),
        "workers": launch(tiny_model_dir, folder / "workers.log", "--backend", "torch", "--workers", "2"),
    }
    try:
        yield {name: wait_until_serving(server) for name, server in launched.items()}
    finally:
        for server in launched.values():
            if server.process.poll() is None:
                server.process.terminate()  # drains and stops its worker processes; a kill would orphan them
        for server in launched.values():
            try:
                server.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


@pytest.fixture(scope="module")
def server(servers) -> Server:
    return servers["main"]


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
    assert server.request("POST", "/endpoints/bad_name!/invocations", image_bytes(),
                          Content_Type="image/jpeg")[0] == 404
    status, answer = server.request("DELETE", "/invocations")
    assert status == 405 and "DELETE" in answer["error"]


def test_the_runtime_api_path_answers_like_invocations(server):
    status, answer = server.request("POST", "/endpoints/bin-counter/invocations", image_bytes(),
                                    Content_Type="image/jpeg")
    assert status == 200 and answer == server.invoke(image_bytes(), "image/jpeg")[1]


def test_a_malformed_request_is_a_json_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(b"NOT A REQUEST LINE AT ALL\r\n\r\n")
        response = connection.makefile("rb").read()
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400") and "error" in json.loads(body)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_json_nested_however_deep_is_a_400(server, depth):
    for body in ("[" * depth + "]" * depth, '{"inputs": ' + "[" * depth + "]" * depth + "}"):
        status, answer = server.invoke(body, "application/json")
        assert status == 400 and "error" in answer
    assert server.invoke(image_bytes(), "image/jpeg")[0] == 200


def alone(server: Server, body: bytes) -> dict:
    status, answer = server.invoke(body, "image/jpeg")
    assert status == 200
    return answer


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers(server):
    bodies = [image_bytes(seed=seed) for seed in range(MAX_QUEUE - 3)]  # with the 3 of the JSON request: a full queue
    expected = [alone(server, body)["probabilities"] for body in bodies]
    batches_before, images_before = server.metric("bincount_batch_size_count"), server.metric("bincount_images_total")
    multi = json.dumps({"inputs": [b64(body) for body in bodies[:3]]})
    requests = [(body, "image/jpeg") for body in bodies] + [(multi, "application/json")]
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        answers = list(pool.map(lambda request: server.invoke(*request), requests))
    for (status, answer), probabilities in zip(answers, expected):
        assert status == 200 and answer["probabilities"] == pytest.approx(probabilities, abs=1e-4)
    assert answers[-1][0] == 200 and [a["probabilities"] for a in answers[-1][1]] == [
        pytest.approx(p, abs=1e-4) for p in expected[:3]]
    batches = server.metric("bincount_batch_size_count") - batches_before
    assert server.metric("bincount_images_total") - images_before == MAX_QUEUE and batches < MAX_QUEUE  # batched


def test_every_bad_input_fails_only_its_own_request_in_a_shared_batch(server):
    bad = [(body, content_type, status, message) for body, content_type, status, message in HANDLER_REFUSES.values()
           if status != 413]  # the endpoint's size limits differ from the handler's defaults
    good = [image_bytes(seed=seed) for seed in range(4)]
    expected = [alone(server, body)["probabilities"] for body in good]
    requests = [(body, "image/jpeg") for body in good] + [(body, content_type) for body, content_type, *_ in bad]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda request: server.invoke(*request), requests * 2))
    for index, (status, answer) in enumerate(answers):
        if index % len(requests) < len(good):
            assert status == 200 and answer["probabilities"] == pytest.approx(expected[index % len(requests)],
                                                                              abs=1e-4)
        else:
            _, _, refused, message = bad[index % len(requests) - len(good)]
            assert status == refused and message in answer["error"]


def test_a_full_queue_answers_503_with_retry_after(server):
    too_many = json.dumps({"inputs": [b64(image_bytes())] * (MAX_QUEUE + 1)})
    status, answer, response = server.exchange("POST", "/invocations", too_many, Content_Type="application/json")
    assert status == 503 and "queued" in answer["error"] and int(response.getheader("Retry-After")) >= 1
    burst = json.dumps({"inputs": [b64(image_bytes(seed=seed)) for seed in range(MAX_QUEUE // 2 + 1)]})
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = [status for status, _ in pool.map(lambda _: server.invoke(burst, "application/json"), range(6))]
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses
    assert server.invoke(image_bytes(), "image/jpeg")[0] == 200


def send_head(server: Server, body: bytes, sent: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body[:sent])
    return connection


def test_clients_that_disconnect_mid_body_or_mid_batch_do_not_hurt_the_others(server):
    body, others = image_bytes(), [image_bytes(seed=seed) for seed in range(4)]
    expected = [alone(server, other)["probabilities"] for other in others]
    send_head(server, body, 100).close()  # mid-body
    quitters = [send_head(server, body, len(body)) for _ in range(3)]  # whole requests, then gone mid-batch
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = pool.map(lambda other: server.invoke(other, "image/jpeg"), others)
        for quitter in quitters:
            quitter.close()
        for (status, answer), probabilities in zip(answers, expected):
            assert status == 200 and answer["probabilities"] == pytest.approx(probabilities, abs=1e-4)
    assert server.invoke(image_bytes(), "image/jpeg")[0] == 200


def test_a_slow_client_sending_byte_by_byte_does_not_block_others(server):
    body = image_bytes(size=(64, 48))
    connection, answered = send_head(server, body, 0), []

    def trickle() -> None:
        for index in range(len(body)):
            connection.sendall(body[index:index + 1])
            time.sleep(4.0 / len(body))
        answered.append(connection.makefile("rb").readline())

    slow = threading.Thread(target=trickle)
    slow.start()
    try:
        start = time.monotonic()
        for _ in range(5):
            assert server.invoke(image_bytes(), "image/jpeg")[0] == 200
        assert time.monotonic() - start < 3.5 and slow.is_alive()  # served while the slow body was still coming
    finally:
        slow.join()
        connection.close()
    assert answered == [b"HTTP/1.1 200 OK\r\n"]


def test_metrics_count_requests_by_status_latency_batches_and_queue(server):
    server.invoke(b"junk", "image/jpeg")
    server.invoke(image_bytes(), "image/jpeg")
    text = server.metrics()
    assert re.search(r'bincount_requests_total\{path="/invocations",status="400"\} [1-9]', text)
    assert re.search(r'bincount_requests_total\{path="/invocations",status="200"\} [1-9]', text)
    assert re.search(r'bincount_request_seconds_bucket\{le="\+Inf",path="/invocations"\} [1-9]', text)
    assert re.search(r"bincount_batch_size_bucket\{le=\"1\.0\"\} [1-9]", text)
    assert "bincount_queue_depth 0.0" in text


def logged_lines(server, text: str, timeout_s: float = 10.0) -> list[str]:
    """The server's log lines holding text, waiting for them: the line is written once the response has gone out."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [line for line in server.log.read_text().splitlines() if text in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_each_request_is_one_log_line_with_its_id_method_path_status_and_time(server):
    path = f"/ping?probe={uuid.uuid4().hex}"
    status, _, response = server.exchange("GET", path)
    request_id = response.getheader("X-Request-Id")
    assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", request_id)
    lines = logged_lines(server, path)
    assert len(lines) == 1 and lines[0].split()[-5:-2] == ["GET", path, "200"] and lines[0].endswith(" ms")
    assert f"[{request_id}]" in lines[0]
    assert server.exchange("GET", "/ping", X_Request_Id="client-id-7")[2].getheader("X-Request-Id") == "client-id-7"


def test_make_server_serves_in_process(tiny_model_dir):
    server = make_server(tiny_model_dir, port=0, backend="torch")
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


def test_workers_share_the_port_and_their_metrics(servers):
    server = servers["workers"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = [status for status, _ in pool.map(lambda _: server.invoke(image_bytes(), "image/jpeg"), range(8))]
    assert statuses == [200] * 8
    assert server.metric("bincount_images_total") >= 8  # summed over the worker processes
    assert len(set(re.findall(r"Started server process \[(\d+)\]", server.log.read_text()))) == 2


def test_sigterm_under_load_answers_requests_in_flight_refuses_new_ones_and_exits_cleanly(servers):
    server, body = servers["stopped"], image_bytes()
    in_flight = [send_head(server, body, 100) for _ in range(3)]
    time.sleep(1)  # the server has read their heads and waits for the rest of their bodies
    stop, late = threading.Event(), []

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                late.append(server.invoke(image_bytes(), "image/jpeg")[0])
            except (OSError, http.client.HTTPException):
                late.append("refused")
                time.sleep(0.05)

    clients = [threading.Thread(target=keep_asking) for _ in range(3)]
    for client in clients:
        client.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert server.process.poll() is None
    for connection in in_flight:
        connection.sendall(body[100:])
    responses = [connection.makefile("rb").read() for connection in in_flight]
    for connection in in_flight:
        connection.close()
    assert server.process.wait(timeout=60) == 0
    stop.set()
    for client in clients:
        client.join()
    assert all(response.startswith(b"HTTP/1.1 200") for response in responses)
    assert set(late) <= {200, 503, "refused"} and 503 in late
    assert "stopped" in server.log.read_text().splitlines()[-1]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5)
