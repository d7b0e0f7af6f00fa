"""A local S3 endpoint with a fixed per-request latency: moto's server app behind a delay, in its own process.

    python -m bench.slow_s3 --port 9000 --delay_ms 30

A real bucket answers a GET in tens of milliseconds (``aft-vbi-pds`` from outside us-east-1: 30 ms is typical);
moto on loopback answers in about one. Without the delay a benchmark would reward a loop that never overlaps requests,
which is exactly what makes the notebook approach slow on the real bucket. The delay is a sleep before each request is
handled, so concurrent requests overlap as they do against S3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from transformers import HfArgumentParser
from werkzeug.serving import run_simple


@dataclass
class SlowS3Arguments:
    port: int = field(default=9000, metadata={"help": "Port on 127.0.0.1."})
    delay_ms: float = field(default=30.0, metadata={"help": "Latency added to every request."})


def main() -> None:
    (args,) = HfArgumentParser(SlowS3Arguments).parse_args_into_dataclasses()
    app = DomainDispatcherApplication(create_backend_app)
    delay = args.delay_ms / 1000

    def delayed(environ, start_response):
        time.sleep(delay)
        return app(environ, start_response)

    run_simple("127.0.0.1", args.port, delayed, threaded=True)


if __name__ == "__main__":
    main()
