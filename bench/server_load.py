"""The local server under load, against round 1's server, in the same run on the same machine.

    python -m bench.server_load [--clients 1,8,32] [--architectures ResNet-50,ViT-B/16] [--requests 2000]

For each architecture (built from config: random weights do not change the cost) two servers run side by side: the
round-1 server (``inference/`` at commit ``--round1``, unpacked with ``git archive``: http.server, one forward at a
time, PyTorch, the image processor) and today's ``python -m inference.serve`` with its defaults (no flags). At each
concurrency the two are loaded in turn by clients sending real ABID JPEGs (``../shared/abid-real``), every fourth
request a JSON body with an expected quantity (the verify path); each request opens its own connection. Reported:
throughput, p50/p99 latency, errors (anything but a 200 with the expected answer) and, for today's server, the
batch sizes its ``/metrics`` counted. Prints Markdown tables and writes ``bench/results/server_load.json``.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import re
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

from bench.handler_latency import ARCHITECTURES, REAL_IMAGES, build_model, real_jpegs
from bench.report import describe, fail, machine, markdown_table, milliseconds, save_results
from cloud.local import free_port, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
ROUND1 = "61b74b1"  # the last commit whose inference.serve was the hand-written http.server


@dataclass
class LoadArguments:
    clients: str = field(default="1,8,32", metadata={"help": "Concurrencies to measure, comma-separated."})
    architectures: str = field(default="ResNet-50,ViT-B/16", metadata={
        "help": f"Architectures built from config: {', '.join(ARCHITECTURES)}."})
    requests: int = field(default=2000, metadata={"help": "Requests per server for ResNet-50 at 8 clients."})
    other_requests: int = field(default=240, metadata={"help": "Requests per server for every other cell."})
    json_every: int = field(default=4, metadata={"help": "Every n-th request is JSON with an expected quantity."})
    images: str = field(default=str(REAL_IMAGES), metadata={"help": "Folder of real JPEGs (searched recursively)."})
    round1: str = field(default=ROUND1, metadata={"help": "Commit of the round-1 server to compare against."})
    baseline: bool = field(default=True, metadata={
        "help": "Run round 1's server too (false: today's alone, e.g. a long error-free run)."})


@dataclass
class Outcome:
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
            return Outcome(time.perf_counter() - start, f"{response.status}: {answer.get('error')}")
        if "probabilities" not in answer or (kind == "json+verify" and "verdict" not in answer):
            return Outcome(time.perf_counter() - start, f"unexpected answer {answer}")
        return Outcome(time.perf_counter() - start, None)
    except (OSError, ValueError, http.client.HTTPException) as error:
        return Outcome(time.perf_counter() - start, repr(error))
    finally:
        connection.close()


def load(port: int, bodies: list[bytes], clients: int, requests: int, json_every: int, label: str
         ) -> tuple[list[Outcome], float]:
    """``clients`` clients share ``requests`` requests; every outcome and the wall time."""
    counter, lock, outcomes = itertools.count(), threading.Lock(), []
    progress = tqdm(total=requests, unit="req", desc=label, leave=False)

    def client() -> None:
        while (index := next(counter)) < requests:
            outcome = send(port, *make_request(index, bodies, json_every))
            with lock:
                outcomes.append(outcome)
                progress.update()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - start
    progress.close()
    return outcomes, elapsed


def batch_sizes(port: int) -> dict[str, float]:
    """Today's server's batch-size histogram buckets (cumulative counts) from /metrics."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    buckets = re.findall(r'bincount_batch_size_bucket\{le="([^"]+)"\} ([0-9.e+]+)', text)
    return {le: float(value) for le, value in buckets}


def histogram(before: dict[str, float], after: dict[str, float]) -> str:
    """Forward passes per batch-size bucket between two scrapes, e.g. "1: 40, 2: 10, 4: 31"."""
    previous, parts = 0.0, []
    for le, cumulative in after.items():
        count = cumulative - before.get(le, 0.0)
        if le != "+Inf" and count - previous > 0:
            parts.append(f"≤{float(le):g}: {count - previous:g}")
        previous = count
    return ", ".join(parts)


def start(command: list[str], cwd: Path, log: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    with log.open("w") as out:
        process = subprocess.Popen(command + ["--port", str(port)], cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=900, process=process)
    except (RuntimeError, TimeoutError) as error:
        stop(process)
        fail(f"{error}:\n{log.read_text()[-3000:]}")
    return process


def round1_tree(commit: str, folder: Path) -> Path:
    """The round-1 ``inference/`` package unpacked from git, to run as it was."""
    archive = subprocess.run(["git", "archive", commit, "inference"], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode:
        fail(f"cannot unpack the round-1 server from commit {commit}: {archive.stderr.decode().strip()}")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def measure(name: str, args: LoadArguments, bodies: list[bytes], folder: Path) -> list[dict]:
    """Both servers of one architecture at every concurrency, in turn."""
    model_dir = build_model(name, folder / "model")
    old = round1_tree(args.round1, folder / "round1")
    ports = {"round 1": free_port(), "today": free_port()} if args.baseline else {"today": free_port()}
    trees = {"round 1": old, "today": ROOT}
    servers = {server: start([sys.executable, "-m", "inference.serve", "--model", str(model_dir)], trees[server],
                             folder / f"{server.replace(' ', '')}.log", port) for server, port in ports.items()}
    rows = []
    try:
        for clients in [int(c) for c in args.clients.split(",")]:
            requests = args.requests if (name, clients) == ("ResNet-50", 8) else args.other_requests
            for server, port in ports.items():
                for index in range(2 * clients):  # warm up: first passes, allocator, thread pools
                    send(port, *make_request(index, bodies, args.json_every))
                before = batch_sizes(port) if server == "today" else {}
                label = f"{name} {server} x{clients}"
                outcomes, elapsed = load(port, bodies, clients, requests, args.json_every, label)
                seconds = [outcome.seconds for outcome in outcomes]
                errors = sorted({o.error for o in outcomes if o.error})
                rows.append({"model": name, "server": server, "clients": clients, "requests": len(outcomes),
                             "throughput (req/s)": round(len(outcomes) / elapsed, 2),
                             "p50 (ms)": milliseconds(seconds, 50), "p99 (ms)": milliseconds(seconds, 99),
                             "errors": sum(o.error is not None for o in outcomes),
                             "batch sizes (forward passes)": histogram(before, batch_sizes(port))
                             if server == "today" else "1 (one request per forward)", "error kinds": errors[:5]})
    finally:
        for process in servers.values():
            stop(process)
    backend = re.search(r"backend (\w+), pre-processing with ([^,]+)", (folder / "today.log").read_text())
    for row in rows:
        if row["server"] == "today" and backend:
            row["server"] = f"today ({backend.group(1)}, {backend.group(2).replace('the ', '')})"
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """The goals: at 8 clients for ResNet-50, at least twice round 1's throughput, p99 no worse, no errors."""
    lines = []
    for old, new in zip(rows[::2], rows[1::2]):
        ratio = new["throughput (req/s)"] / old["throughput (req/s)"]
        new["speed-up"] = f"{ratio:.2f}x"
        if (old["model"], old["clients"]) == ("ResNet-50", 8):
            met = ratio >= 2 and new["p99 (ms)"] <= old["p99 (ms)"] and new["errors"] == 0
            lines.append(f"ResNet-50 at 8 clients: {ratio:.2f}x round 1's throughput, p99 {new['p99 (ms)']} vs "
                         f"{old['p99 (ms)']} ms, {new['errors']} errors in {new['requests']} requests: goal "
                         f"{'met' if met else 'missed'}")
    return lines


def main() -> None:
    (args,) = HfArgumentParser(LoadArguments).parse_args_into_dataclasses()
    names = args.architectures.split(",")
    if unknown := [name for name in names if name not in ARCHITECTURES]:
        fail(f"unknown architecture(s) {unknown} (one of {', '.join(ARCHITECTURES)})")
    bodies = real_jpegs(args.images, count=480)
    info, rows = machine(), []
    started = time.perf_counter()
    for name in names:
        with tempfile.TemporaryDirectory() as folder:
            rows += measure(name, args, bodies, Path(folder))
    lines = verdicts(rows) if args.baseline else []
    results = {"machine": info, "machine_after": machine(), "settings": asdict(args), "rows": rows,
               "verdicts": lines, "wall_s": round(time.perf_counter() - started, 1),
               "images": {"source": args.images, "count": len(bodies)}}
    print(f"Server load, {len(bodies)} real ABID JPEGs; {describe(info)} (after: load average "
          f"{results['machine_after']['load_average'][0]})\n")
    print(markdown_table(rows, [key for key in rows[0] if key != "error kinds"] + ["speed-up"] * args.baseline))
    print("\n" + "\n".join(lines))
    for row in rows:
        for kind in row["error kinds"]:
            print(f"error ({row['model']}, {row['server']}, {row['clients']} clients): {kind}")
    print(f"\nwritten to {save_results('server_load', results)}")
    sys.exit(1 if any(row["errors"] for row in rows) else 0)


if __name__ == "__main__":
    main()
