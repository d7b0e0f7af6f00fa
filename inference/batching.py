"""Dynamic batching across requests: images of concurrent requests share one forward pass.

Requests first ``reserve`` room for their images (a full queue refuses them at once with ``Overloaded``, so a burst
gets 503s instead of a queue that grows without limit), pre-process them in their own threads, then ``submit`` the
pixels. One worker thread takes up to ``max_batch_size`` images, waiting at most ``max_wait_ms`` after the first for
more, and runs them in one forward pass. It stops waiting early when every reserved image is already queued: no one
else is about to arrive, so waiting would only add latency. A forward pass that fails is retried image by image, so
one bad image fails only its own request; a request whose client has gone (its futures cancelled) is dropped from
the batch without disturbing the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("inference.batching")


class Overloaded(Exception):
    """The queue is full: answer 503 and ask the client to come back after ``retry_after`` seconds."""

    def __init__(self, queued: int, limit: int, retry_after: int):
        super().__init__(f"server busy: {queued} images queued, the limit is {limit}; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Item:
    pixels: np.ndarray  # one pre-processed image (3, H, W)
    future: Future = field(default_factory=Future)  # its probabilities (classes,)


class DynamicBatcher:
    """Gathers images from many requests into batched calls of ``forward`` (pixels (N, 3, H, W) -> (N, classes))."""

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_batch_size: int = 8, max_wait_ms: float = 5,
                 max_queue: int = 64, on_batch: Callable[[int], None] | None = None):
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_queue must be at least 1, max_wait_ms at least 0")
        self.forward, self.max_batch_size, self.max_wait = forward, max_batch_size, max_wait_ms / 1000
        self.max_queue, self.on_batch = max_queue, on_batch
        self.items: deque[Item] = deque()
        self.reserved = 0  # images admitted and not yet taken into a forward pass (queued or being pre-processed)
        self.seconds_per_image = 0.05  # running estimate, for Retry-After
        self.condition = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self.run, name="batcher", daemon=True)
        self.thread.start()

    @property
    def depth(self) -> int:
        return self.reserved

    def reserve(self, count: int) -> None:
        """Admit ``count`` images or raise Overloaded; every reserved image is later submitted or released."""
        with self.condition:
            if self.reserved + count > self.max_queue:
                retry = max(1, round(self.reserved * self.seconds_per_image))
                raise Overloaded(self.reserved, self.max_queue, retry)
            self.reserved += count

    def release(self, count: int) -> None:
        """Give back reserved room that will not be submitted (the request failed before its forward pass)."""
        with self.condition:
            self.reserved -= count
            self.condition.notify()

    def submit(self, pixels: np.ndarray) -> list[Future]:
        """Queue reserved images (N, 3, H, W); one future per image, resolved with its probabilities."""
        items = [Item(image) for image in pixels]
        with self.condition:
            self.items.extend(items)
            self.condition.notify()
        return [item.future for item in items]

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify()
        self.thread.join()

    def run(self) -> None:
        while batch := self.next_batch():
            start = time.perf_counter()
            self.run_batch(batch)
            per_image = (time.perf_counter() - start) / len(batch)
            self.seconds_per_image = 0.8 * self.seconds_per_image + 0.2 * per_image

    def next_batch(self) -> list[Item]:
        """Up to max_batch_size live items of one shape, once full, or max_wait after the first, or nothing is due."""
        with self.condition:
            while not self.items and not self.closed:
                self.condition.wait()
            if not self.items:
                return []
            deadline = time.monotonic() + self.max_wait
            while (len(self.items) < self.max_batch_size and len(self.items) < self.reserved
                   and (left := deadline - time.monotonic()) > 0):
                self.condition.wait(left)
            shape, batch = self.items[0].pixels.shape, []
            while self.items and len(batch) < self.max_batch_size and self.items[0].pixels.shape == shape:
                batch.append(self.items.popleft())
            self.reserved -= len(batch)
        return [item for item in batch if item.future.set_running_or_notify_cancel()]

    def run_batch(self, batch: list[Item]) -> None:
        """One forward pass for the batch; if it fails, each image alone, so only a failing one gets the error."""
        if not batch:
            return
        try:
            probabilities = self.forward(np.stack([item.pixels for item in batch]))
        except Exception as error:  # noqa: BLE001 - handed to the requests, whatever it is
            if len(batch) == 1:
                batch[0].future.set_exception(error)
                return
            log.warning("a batch of %d failed (%r); running its images one by one", len(batch), error)
            for item in batch:
                self.run_alone(item)
            return
        if self.on_batch:
            self.on_batch(len(batch))
        for item, row in zip(batch, probabilities):
            item.future.set_result(row)

    def run_alone(self, item: Item) -> None:
        try:
            item.future.set_result(self.forward(item.pixels[None])[0])
        except Exception as error:  # noqa: BLE001 - handed to its request, whatever it is
            item.future.set_exception(error)
