"""Serve a counting model over HTTP with the SageMaker container's contract: next to the robots, or for development.

    python -m inference.serve --model runs/model --port 8080 [--workers 2] [--max_batch_size 8] [--max_wait_ms 5]

uvicorn (HTTP, worker processes, graceful shutdown) runs the Starlette app of ``inference.asgi``: ``GET /ping``,
``POST /invocations`` (also as ``POST /endpoints/<name>/invocations``, so an SDK predictor reaches it unchanged with
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:<port>``) and ``GET /metrics``. Images of concurrent requests
are batched into shared forward passes; the backend defaults to the fastest correct one for the machine (ONNX Runtime
on a CPU, PyTorch on a GPU; see ``inference.backends``). The port is open only once the model is loaded. SIGTERM
drains: requests in flight are answered, new ones get 503, then the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from transformers import HfArgumentParser
from uvicorn.supervisors import Multiprocess

from core.cli import entry_point, parse
from inference.asgi import JsonErrorsProtocol, Options, create_app, options_env, setup_logging
from inference.backends import BACKENDS, load_backend

log = logging.getLogger("inference.serve")


@dataclass
class ServeArguments:
    model: str = field(metadata={"help": "Model folder as training saves it (config.json, model.safetensors, "
                                         "preprocessor_config.json)."})
    port: int = field(default=8080, metadata={"help": "TCP port; 0 picks a free one."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (0.0.0.0 for other machines)."})
    workers: int = field(default=1, metadata={
        "help": "Server processes, each with its own model and batcher (for machines with many cores)."})
    backend: str = field(default="auto", metadata={
        "help": f"Forward pass: {', '.join(BACKENDS)} (auto: ONNX Runtime on CPU when installed, else PyTorch)."})
    max_batch_size: int = field(default=8, metadata={"help": "Most images in one forward pass."})
    max_wait_ms: float = field(default=5.0, metadata={
        "help": "Longest wait for more images after the first of a batch (none when no other request is coming)."})
    max_queue: int = field(default=64, metadata={
        "help": "Images admitted and waiting, per worker; beyond it requests get 503 with Retry-After."})
    max_body_bytes: int | None = field(default=None, metadata={
        "help": "Answer larger request bodies with 413 (default: $BINCOUNT_MAX_BODY_BYTES, else 16 MiB)."})
    torch_threads: int | None = field(default=None, metadata={
        "help": "Threads of each forward pass (default: one per core, divided among the workers)."})
    body_timeout_s: float = field(default=60.0, metadata={"help": "A body not received in this time gets 408."})
    drain_timeout_s: float = field(default=30.0, metadata={
        "help": "On SIGTERM, the longest wait for requests in flight before shutting down."})


def worker_options(args: ServeArguments) -> Options:
    threads = args.torch_threads
    if threads is None and args.workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
    return Options(args.model, args.backend, args.max_batch_size, args.max_wait_ms, args.max_queue,
                   args.max_body_bytes, threads, args.body_timeout_s, args.drain_timeout_s)


def check(args: ServeArguments) -> None:
    if not Path(args.model).is_dir():
        raise ValueError(f"model folder {args.model!r} does not exist")
    if args.backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {args.backend!r}")
    for name in ("workers", "max_batch_size", "max_queue"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound once here and shared by every worker process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: object, workers: int = 1) -> uvicorn.Config:
    return uvicorn.Config(app, factory=isinstance(app, str), workers=workers, http=JsonErrorsProtocol,
                          lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=60,
                          timeout_worker_healthcheck=300,  # a worker imports torch and loads the model first
                          timeout_keep_alive=15)


def serve(args: ServeArguments) -> None:
    """Run until SIGTERM or SIGINT: in this process, or as a supervisor of ``--workers`` processes."""
    options = worker_options(args)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    if args.workers == 1:
        server = uvicorn.Server(uvicorn_config(create_app(options)))
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # uvicorn re-raises it when done: exit 0 then
        log.info("serving %s on http://%s:%d", args.model, host, port)
        server.run(sockets=[sock])
        return
    with tempfile.TemporaryDirectory(prefix="bincount-metrics-") as metrics_dir:
        os.environ.update(options_env(options), PROMETHEUS_MULTIPROC_DIR=metrics_dir)
        log.info("serving %s on http://%s:%d with %d workers", args.model, host, port, args.workers)
        Multiprocess(uvicorn_config("inference.asgi:app_from_env", args.workers),
                                         sockets=[sock]).run()


def export_once(args: ServeArguments) -> None:
    """With several workers, export the ONNX model here first, so they do not all export it at once."""
    if args.workers > 1 and args.backend != "torch":
        from inference.handler import model_fn

        load_backend(model_fn(args.model), args.model, args.backend)


@entry_point(user_errors=(OSError, ValueError))
def main(argv: list[str] | None = None) -> None:
    (args,) = parse(HfArgumentParser(ServeArguments), argv)
    setup_logging()
    check(args)
    export_once(args)
    serve(args)
    log.info("stopped")


class InProcessServer:
    """The server in this process, for notebooks and tests: ``serve_forever()`` in a thread, then ``shutdown()``."""

    def __init__(self, options: Options, host: str = "127.0.0.1", port: int = 0):
        self.socket = bind(host, port)
        self.server_address = self.socket.getsockname()[:2]
        self.app = create_app(options)  # an ASGI app; wrap it (before serve_forever) to watch the requests
        self.model = self.app.service.model
        self.server: uvicorn.Server | None = None
        self.stopped = threading.Event()

    def serve_forever(self) -> None:
        self.server = uvicorn.Server(uvicorn_config(self.app))
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.stopped.set()

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.stopped.wait(timeout=120)

    def server_close(self) -> None:
        self.socket.close()


def make_server(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, **options: object
                ) -> InProcessServer:
    """Load the model and bind the port (0 picks a free one, see ``server.server_address``); run serve_forever()."""
    if not Path(model_dir).is_dir():
        raise FileNotFoundError(f"model folder {str(model_dir)!r} does not exist")
    return InProcessServer(Options(str(model_dir), **options), host, port)


if __name__ == "__main__":
    sys.exit(main())
