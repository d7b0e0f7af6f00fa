"""The serving app: a Starlette application behind uvicorn, with the SageMaker container's HTTP contract.

Routes: ``GET /ping`` (200 while serving, 503 while draining), ``POST /invocations`` and the runtime API's
``POST /endpoints/<name>/invocations`` (the handler's content types and answers), ``GET /metrics`` (Prometheus).
Every response carries an ``X-Request-Id`` (the client's, when it sends a sane one) and every log line names it.
Errors are JSON ``{"error": "<one line>"}``: the handler's 4xx, 404/405 for other paths and methods, 408 for a body
that does not arrive in time, 503 with ``Retry-After`` when the queue is full or the server is draining, 500 for a
fault of ours (logged, never detailed). A request's images join the dynamic batcher (``inference.batching``), so
concurrent requests share forward passes. On SIGTERM the server drains: requests in flight are answered, new ones get
503, then uvicorn shuts down.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inference import handler
from inference.backends import load_backend, sample_pixels
from inference.batching import DynamicBatcher, Overloaded
from inference.handler import BadRequest, Settings
from inference.metrics import CONTENT_TYPE, Metrics, route_name

log = logging.getLogger("inference.serve")
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ENDPOINT_NAME = re.compile(r"[A-Za-z0-9-]{1,63}")
OPTIONS_VARIABLE = "BINCOUNT_SERVE_OPTIONS"  # how the supervisor hands each worker process its options
LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(message)s"


@dataclass
class Options:
    """What each worker process needs to serve; serve.py's command line fills it in."""

    model: str
    backend: str = "auto"
    max_batch_size: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64
    max_body_bytes: int | None = None
    torch_threads: int | None = None
    body_timeout_s: float = 60.0
    drain_timeout_s: float = 30.0


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def setup_logging() -> None:
    """One line per event, each naming its request (``-`` outside one); uvicorn's own lines included."""
    root = logging.getLogger()
    if not any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters):
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(LOG_FORMAT))
        stream.addFilter(RequestIdFilter())
        root.addHandler(stream)
    root.setLevel(logging.INFO)


class Service:
    """One worker's model, backend, batcher and metrics, and whether it is draining."""

    def __init__(self, options: Options):
        self.options = options
        settings = Settings.from_env()
        if options.max_body_bytes is not None:
            settings = replace(settings, max_body_bytes=options.max_body_bytes)
        self.settings = settings
        if options.torch_threads:
            torch.set_num_threads(options.torch_threads)
        self.model = handler.model_fn(options.model)
        sample = sample_pixels(self.model)
        self.backend = load_backend(self.model, options.model, options.backend, options.torch_threads, sample)
        self.backend(sample[:1])  # the first forward pass allocates; no request should wait for that
        self.metrics = Metrics()
        self.batcher = DynamicBatcher(self.backend, options.max_batch_size, options.max_wait_ms, options.max_queue,
                                      on_batch=self.on_batch)
        self.draining, self.in_flight = False, 0
        log.info("model %s: backend %s, pre-processing with %s, batches of up to %d within %.1f ms, queue %d",
                 options.model, self.backend.name, "the fast path" if self.model.fast else "the saved processor",
                 options.max_batch_size, options.max_wait_ms, options.max_queue)

    def on_batch(self, size: int) -> None:
        self.metrics.observe_batch(size)
        self.metrics.queue_depth.set(self.batcher.depth)

    async def classify(self, request: handler.Request) -> np.ndarray:
        """Probabilities of the request's images, from forward passes shared with other requests."""
        count = len(request.images)
        self.batcher.reserve(count)
        self.metrics.queue_depth.set(self.batcher.depth)
        submitted = False
        try:
            pixels = await run_in_threadpool(handler.prepare, self.model, request)
            futures = self.batcher.submit(pixels)
            submitted = True
            return np.stack(await asyncio.gather(*(asyncio.wrap_future(future) for future in futures)))
        finally:
            if not submitted:
                self.batcher.release(count)
                self.metrics.queue_depth.set(self.batcher.depth)


def error(status: int, message: str, **headers: str) -> Response:
    return Response(json.dumps({"error": " ".join(message.split())}), status, headers or None,
                    media_type="application/json")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, in time; one over the limit is read and dropped, so the client still sees our 413."""
    length = request.headers.get("content-length")
    if length is None and "chunked" not in request.headers.get("transfer-encoding", "").lower():
        raise BadRequest("a Content-Length header is required", 411)
    chunks, size = [], 0
    async with asyncio.timeout(timeout):
        async for chunk in request.stream():
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
    if size > limit:
        raise BadRequest(f"body is {size} bytes, over the limit of {limit}", 413)
    return b"".join(chunks)


async def invocations(request: Request) -> Response:
    service: Service = request.app.state.service
    name = request.path_params.get("name")
    if name is not None and not ENDPOINT_NAME.fullmatch(name):
        return error(404, f"no such path {request.url.path!r}")
    try:
        body = await read_body(request, service.settings.max_body_bytes, service.options.body_timeout_s)
        accept = request.headers.get("accept")
        handler.encode_response([], accept)  # an Accept we cannot answer is a 406 before any work
        parsed = await run_in_threadpool(handler.parse_request, body, request.headers.get("content-type"),
                                         service.settings)
        verdicts = handler.thresholds(service.model, parsed)
        probabilities = await service.classify(parsed)
        answer = handler.answer(service.model, parsed, probabilities, verdicts)
        return Response(handler.encode_response(answer, accept), media_type="application/json")
    except BadRequest as refused:
        return error(refused.status, str(refused))
    except Overloaded as busy:
        return error(503, str(busy), **{"Retry-After": str(busy.retry_after)})
    except TimeoutError:
        return error(408, f"the body did not arrive within {service.options.body_timeout_s:g} s")
    except ClientDisconnect:
        return error(499, "client closed the connection")  # nobody reads it; the access log and metrics do


async def ping(request: Request) -> Response:
    if request.app.state.service.draining:
        return error(503, "shutting down", **{"Retry-After": "1"})
    return Response(json.dumps({"status": "healthy"}), media_type="application/json")


async def metrics(request: Request) -> Response:
    return Response(request.app.state.service.metrics.exposition(), media_type=CONTENT_TYPE)


async def http_error(request: Request, exception: Exception) -> Response:
    assert isinstance(exception, HTTPException)
    if exception.status_code == 404:
        return error(404, f"no such path {request.url.path!r}")
    if exception.status_code == 405:
        return error(405, f"method {request.method} is not allowed on {request.url.path}",
                     Allow=(exception.headers or {}).get("Allow", ""))
    return error(exception.status_code, str(exception.detail))


async def server_error(request: Request, exception: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exception)
    return error(500, "internal server error")


def install_drain(service: Service) -> None:
    """On SIGTERM: answer new requests 503, let those in flight finish, then let uvicorn shut down."""
    if threading.current_thread() is not threading.main_thread():
        return  # an in-process server in a thread has no signals to handle
    loop, previous = asyncio.get_running_loop(), signal.getsignal(signal.SIGTERM)

    async def drain_then_stop(frame: object) -> None:
        deadline = time.monotonic() + service.options.drain_timeout_s
        while service.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log.info("drained (%d request(s) still in flight); stopping", service.in_flight)
        if callable(previous):
            previous(signal.SIGTERM, frame)

    def on_sigterm(signum: int, frame: object) -> None:
        if not service.draining:
            service.draining = True
            log.info("SIGTERM: draining %d request(s) in flight; new requests get 503", service.in_flight)
            loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_stop(frame)))

    signal.signal(signal.SIGTERM, on_sigterm)


class Front:
    """ASGI middleware: request id, draining, in-flight count, access log line and request metrics."""

    def __init__(self, app: Starlette, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if SANE_ID.fullmatch(given) else uuid.uuid4().hex
        token, start, status = REQUEST_ID.set(request_id), time.perf_counter(), [499]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            if self.service.draining and scope["path"] != "/metrics":
                await error(503, "shutting down", **{"Retry-After": "1", "Connection": "close"})(
                    scope, receive, send_with_id)
            else:
                self.service.in_flight += 1
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    self.service.in_flight -= 1
        finally:
            seconds = time.perf_counter() - start
            query = scope.get("query_string", b"").decode("latin-1")
            log.info("%s %s %d %.1f ms", scope["method"], scope["path"] + (f"?{query}" if query else ""), status[0],
                     seconds * 1000)
            self.service.metrics.observe_request(route_name(scope["path"]), status[0], seconds)
            REQUEST_ID.reset(token)


class JsonErrorsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, but a request it cannot parse gets our JSON 400 rather than plain text."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": f"malformed HTTP request: {msg}"}).encode()
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()


def create_app(options: Options) -> Front:
    """Load the model (so the server listens only once it can answer) and build the app around it."""
    service = Service(options)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        install_drain(service)
        yield
        await run_in_threadpool(service.batcher.close)

    routes = [Route("/ping", ping, methods=["GET"]), Route("/metrics", metrics, methods=["GET"]),
              Route("/invocations", invocations, methods=["POST"]),
              Route("/endpoints/{name}/invocations", invocations, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.service = service
    return Front(app, service)


def app_from_env() -> Front:
    """The app factory each uvicorn worker process calls (``inference.asgi:app_from_env``)."""
    setup_logging()
    return create_app(Options(**json.loads(os.environ[OPTIONS_VARIABLE])))


def options_env(options: Options) -> dict[str, str]:
    return {OPTIONS_VARIABLE: json.dumps(asdict(options))}
