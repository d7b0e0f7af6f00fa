"""Serve a counting model on this machine with the SageMaker container's HTTP contract, for development and benchmarks.

    python -m inference.serve --model runs/model --port 8080

``GET /ping`` answers 200 once the model is loaded (the server only listens after that); ``POST /invocations`` takes
the content types of ``inference.handler`` and answers its JSON. It also answers the SageMaker runtime API's path,
``POST /endpoints/<name>/invocations``, so an SDK predictor reaches it unchanged with
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:<port>``. Requests run in threads: images decode and
pre-process concurrently, while the model's forward pass runs one request at a time (the lock in the loaded model).
Errors are JSON ``{"error": "<one line>"}`` with a 4xx status (500 for a fault of ours, logged here, never sent).
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import torch
from transformers import HfArgumentParser

from inference.handler import BadRequest, CountingModel, Settings, encode_response, model_fn, parse_request, predict

INVOCATIONS = re.compile(r"/invocations|/endpoints/[A-Za-z0-9-]{1,63}/invocations")
log = logging.getLogger("inference.serve")


@dataclass
class ServeArguments:
    model: str = field(metadata={"help": "Model folder as training saves it (config.json, model.safetensors, "
                                         "preprocessor_config.json)."})
    port: int = field(default=8080, metadata={"help": "TCP port; 0 picks a free one."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (0.0.0.0 for other machines)."})
    max_body_bytes: int | None = field(default=None, metadata={
        "help": "Answer larger request bodies with 413 (default: $BINCOUNT_MAX_BODY_BYTES, else 16 MiB)."})
    torch_threads: int | None = field(default=None, metadata={
        "help": "Threads of the model forward (default: torch's choice, one per core). Forwards run one at a time, "
                "so they should use every core; decoding and pre-processing of other requests overlap with them."})


class InferenceServer(ThreadingHTTPServer):
    """An HTTP server holding one loaded model; server_close() waits for requests in flight."""

    daemon_threads = False
    request_queue_size = 128  # many clients may connect at once

    def __init__(self, address: tuple[str, int], model: CountingModel, settings: Settings):
        self.model = model
        self.settings = settings
        super().__init__(address, InvocationHandler)

    def handle_error(self, request, client_address) -> None:
        log.warning("connection from %s failed: %r", client_address[0], sys.exc_info()[1])


class InvocationHandler(BaseHTTPRequestHandler):
    server: InferenceServer
    timeout = 60  # a client that stalls mid-request cannot hold a thread, or shutdown, for ever
    default_request_version = "HTTP/1.0"  # so even a malformed request gets a status line (no one speaks HTTP/0.9)

    def handle_one_request(self) -> None:
        self.started = time.perf_counter()
        super().handle_one_request()

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/ping":
            self.reply(HTTPStatus.OK, json.dumps({"status": "healthy"}))
        else:
            self.send_error(HTTPStatus.NOT_FOUND, f"no such path {self.path!r}")

    def do_POST(self) -> None:
        try:
            body = self.read_body()
            if not INVOCATIONS.fullmatch(urlsplit(self.path).path):
                self.send_error(HTTPStatus.NOT_FOUND, f"no such path {self.path!r}")
                return
            request = parse_request(body, self.headers.get("Content-Type"), self.server.settings)
            answer = encode_response(predict(self.server.model, request), self.headers.get("Accept"))
        except BadRequest as error:
            self.reply(error.status, error.body)
        except Exception:
            log.exception("%s %s failed", self.command, self.path)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR)
        else:
            self.reply(HTTPStatus.OK, answer)

    def read_body(self) -> bytes:
        """The request body; one over the limit is read and dropped, so the client still sees our 413."""
        if "Content-Length" not in self.headers:
            raise BadRequest("a Content-Length header is required", HTTPStatus.LENGTH_REQUIRED)
        try:
            length = int(self.headers["Content-Length"])
            if length < 0:
                raise ValueError
        except ValueError:
            raise BadRequest(f"invalid Content-Length {self.headers['Content-Length']!r}") from None
        limit = self.server.settings.max_body_bytes
        if length <= limit:
            return self.rfile.read(length)
        while length > 0 and (chunk := self.rfile.read(min(length, 2**20))):
            length -= len(chunk)
        raise BadRequest(f"body is {self.headers['Content-Length']} bytes, over the limit of {limit}",
                         HTTPStatus.REQUEST_ENTITY_TOO_LARGE)

    def reply(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error, the base class's own (bad request line, unsupported method) included, as our JSON."""
        self.close_connection = True
        self.reply(code, json.dumps({"error": message or HTTPStatus(code).phrase}))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        path = getattr(self, "path", None)  # unset when the request line itself was bad
        log.info("%s %s %s %.1f ms", self.command or "-", path or "-", int(code), elapsed_ms)

    def log_message(self, format: str, *args) -> None:
        log.warning(format, *args)


def make_server(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8080,
                settings: Settings | None = None) -> InferenceServer:
    """Load the model and bind the port (0 picks a free one, see ``server.server_address``); run serve_forever()."""
    if not Path(model_dir).is_dir():
        raise FileNotFoundError(f"model folder {str(model_dir)!r} does not exist")
    return InferenceServer((host, port), model_fn(str(model_dir)), settings or Settings.from_env())


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(ServeArguments).parse_args_into_dataclasses(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    try:
        settings = Settings.from_env()
        if args.max_body_bytes is not None:
            settings = replace(settings, max_body_bytes=args.max_body_bytes)
        server = make_server(args.model, args.host, args.port, settings)
    except (OSError, ValueError) as error:
        sys.exit("error: " + " ".join(str(error).split()))

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown).start()  # shutdown() waits for serve_forever(), so not here

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    log.info("serving %s on http://%s:%d", args.model, host, port)
    server.serve_forever()
    server.server_close()
    log.info("stopped")


if __name__ == "__main__":
    main()
