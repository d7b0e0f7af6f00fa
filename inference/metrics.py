"""The server's Prometheus metrics: requests by status, latency, batch sizes and queue depth, at ``GET /metrics``.

With several worker processes (``--workers N``) prometheus_client's multiprocess mode adds them up: the supervisor sets
PROMETHEUS_MULTIPROC_DIR before the workers start, each worker writes its values there, and whichever worker answers
``/metrics`` reports the sum (queue depth: the sum over live workers).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One set of metrics per server process, in its own registry (so tests may build several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("bincount_requests", "HTTP requests answered, by path and status",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("bincount_request_seconds", "Time from request to answer, by path",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("bincount_batch_size", "Images per forward pass", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.queue_depth = Gauge("bincount_queue_depth", "Images admitted and waiting for a forward pass",
                                 multiprocess_mode="livesum", registry=self.registry)
        self.images = Counter("bincount_images", "Images classified", registry=self.registry)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)
        self.images.inc(size)

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's metrics, or every worker's under multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def route_name(path: str) -> str:
    """A bounded label for a path: one per route, so clients cannot grow the metrics with made-up paths."""
    if path in ("/ping", "/metrics", "/invocations"):
        return path
    if path.startswith("/endpoints/") and path.endswith("/invocations"):
        return "/endpoints/{name}/invocations"
    return "other"
