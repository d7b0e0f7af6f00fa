"""The local server under load: ``python -m inference.serve`` in its own process, concurrent clients sending real JPEG
bodies (every few requests a JSON body with an expected quantity, the verify path); throughput, latency p50/p99 and
errors, which must be zero.

    python -m bench.server_load [--requests 2000] [--clients 8] [--model DIR | --architecture ResNet-50]

Without ``--model`` the server gets a model built from config (random weights: they do not change the cost). Each
request opens its own connection, as the server speaks HTTP/1.0. Prints a Markdown table and writes
``bench/results/server_load.json`` with the machine it ran on.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm
from transformers import HfArgumentParser

from bench.handler_latency import ARCHITECTURES, abid_jpegs, build_model
from bench.report import fail, machine, markdown_table, milliseconds, save_results
from cloud.local import free_port, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LoadArguments:
    requests: int = field(default=2000, metadata={"help": "Requests in total."})
    clients: int = field(default=8, metadata={"help": "Concurrent clients."})
    json_every: int = field(default=4, metadata={
        "help": "Every n-th request is JSON with an expected quantity (verify); the others are raw image/jpeg."})
    model: str | None = field(default=None, metadata={"help": "Model folder to serve (default: --architecture)."})
    architecture: str = field(default="ResNet-50", metadata={
        "help": f"Architecture built from config when no --model is given: {', '.join(ARCHITECTURES)}."})
    torch_threads: int | None = field(default=None, metadata={
        "help": "The server's --torch_threads (default: the server's own default)."})


@dataclass
class Outcome:
    kind: str
    seconds: float
    error: str | None


def make_request(index: int, bodies: list[bytes], json_every: int) -> tuple[str, str, bytes]:
    """(kind, content type, body) of request ``index``."""
    body = bodies[index % len(bodies)]
    if index % json_every:
        return "image/jpeg", "image/jpeg", body
    document = {"inputs": base64.b64encode(body).decode(), "parameters": {"expected_quantity": index % 6}}
    return "json+verify", "application/json", json.dumps(document).encode()


def send(port: int, kind: str, content_type: str, body: bytes) -> Outcome:
    """One request on its own connection; anything but a 200 with the expected answer is an error."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            return Outcome(kind, time.perf_counter() - start, f"{response.status}: {answer.get('error')}")
        if "probabilities" not in answer or (kind == "json+verify" and "verdict" not in answer):
            return Outcome(kind, time.perf_counter() - start, f"unexpected answer {answer}")
        return Outcome(kind, time.perf_counter() - start, None)
    except (OSError, ValueError) as error:
        return Outcome(kind, time.perf_counter() - start, repr(error))
    finally:
        connection.close()


def load(port: int, bodies: list[bytes], args: LoadArguments) -> tuple[list[Outcome], float]:
    """``args.clients`` clients share ``args.requests`` requests; returns every outcome and the wall time."""
    counter, lock, outcomes = itertools.count(), threading.Lock(), []
    progress = tqdm(total=args.requests, unit="req", desc=f"{args.clients} clients")

    def client() -> None:
        while True:
            with lock:
                index = next(counter)
            if index >= args.requests:
                return
            outcome = send(port, *make_request(index, bodies, args.json_every))
            with lock:
                outcomes.append(outcome)
                progress.update()

    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        for future in [pool.submit(client) for _ in range(args.clients)]:
            future.result()
    elapsed = time.perf_counter() - start
    progress.close()
    return outcomes, elapsed


def summarise(name: str, outcomes: list[Outcome], elapsed: float | None) -> dict:
    seconds = [outcome.seconds for outcome in outcomes]
    return {"requests": name, "count": len(outcomes),
            "throughput (req/s)": round(len(outcomes) / elapsed, 2) if elapsed else "",
            "p50 (ms)": milliseconds(seconds, 50), "p99 (ms)": milliseconds(seconds, 99),
            "errors": sum(outcome.error is not None for outcome in outcomes)}


def main() -> None:
    (args,) = HfArgumentParser(LoadArguments).parse_args_into_dataclasses()
    if args.architecture not in ARCHITECTURES:
        fail(f"unknown architecture {args.architecture!r} (one of {', '.join(ARCHITECTURES)})")
    bodies = abid_jpegs()
    with tempfile.TemporaryDirectory() as folder:
        model_dir = args.model or str(build_model(args.architecture, Path(folder)))
        port, log = free_port(), Path(folder) / "serve.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with log.open("w") as out:
            threads = ["--torch_threads", str(args.torch_threads)] if args.torch_threads else []
            server = subprocess.Popen([sys.executable, "-m", "inference.serve", "--model", model_dir, "--port",
                                       str(port), *threads], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=600, process=server)
            for index in range(2 * args.clients):  # warm up: first forward passes, allocator
                send(port, *make_request(index, bodies, args.json_every))
            outcomes, elapsed = load(port, bodies, args)
        except (RuntimeError, TimeoutError) as error:
            print(log.read_text()[-3000:], file=sys.stderr)
            fail(str(error))
        finally:
            stop(server)

    rows = [summarise("all", outcomes, elapsed)]
    rows += [summarise(kind, [o for o in outcomes if o.kind == kind], None) for kind in ("image/jpeg", "json+verify")]
    errors = sorted({outcome.error for outcome in outcomes if outcome.error})
    info = machine()
    results = {"machine": info, "settings": asdict(args), "model": args.model or args.architecture, "rows": rows,
               "errors": errors[:20], "wall_s": round(elapsed, 2)}
    print(f"Server load: {args.model or args.architecture + ' (from config)'}, {args.requests} requests from "
          f"{args.clients} clients in {elapsed:.1f} s; CPU: {info['cpu']}, {info['usable_cores']} usable cores, "
          f"server torch threads {args.torch_threads or 'default'}, load average {info['load_average']}\n")
    print(markdown_table(rows))
    for error in errors[:5]:
        print(f"error: {error}")
    print(f"\nwritten to {save_results('server_load', results)}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
