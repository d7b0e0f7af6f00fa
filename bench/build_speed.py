"""Dataset build speed and memory: data.build vs the naive loop of the capstone notebooks, side by side in one run.

    python -m bench.build_speed [--s3_images 4000] [--sizes 2000 8000 20000] [--delay_ms 30]

The naive loop does what the capstones did, one image at a time: GET the metadata, GET the image, decode it fully,
resize it, save it. ``data.build`` overlaps its reads (``--io_threads`` per process), decodes JPEGs at reduced scale
and writes parquet shards, in ``--num_proc`` processes.

1. From S3 with realistic latency: both read the same synthetic bucket from ``bench.slow_s3`` (moto + a fixed delay
   per request). Images/s; goal: data.build >= 10x the naive loop at 30 ms on 2 cores.
2. From a local folder: images/s per core (one process each) and the peak memory of the whole process tree, at
   several dataset sizes (flat memory) and on the real ABID sample when ``../shared/abid-sample`` exists. Memory is
   reported as RSS and as anonymous RSS: RSS also counts the page cache of memory-mapped files (the Arrow files the
   final ``save_to_disk`` writes out), which grows with the dataset but is the kernel's to reclaim.

Each measured command runs in its own process; results go to bench/results/build_speed.json.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from transformers import HfArgumentParser

from bench.report import RESULTS, describe, machine, markdown_table, save_results
from cloud import s3
from cloud.local import aws_env, free_port, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
ABID_SAMPLE = ROOT.parent / "shared" / "abid-sample"


@dataclass
class BuildBenchArguments:
    s3_images: int = field(default=4000, metadata={"help": "Synthetic bins behind the slow S3 endpoint."})
    sizes: list[int] = field(default_factory=lambda: [2000, 8000, 20000], metadata={"help": "Local dataset sizes."})
    delay_ms: float = field(default=30.0, metadata={"help": "Latency per S3 request."})
    naive: list[str] = field(default_factory=list, metadata={
        "help": "Internal: run the naive loop on SOURCE OUTPUT [ENDPOINT] and exit."})


def naive_loop(source: str, output: Path, endpoint: str | None = None) -> int:
    """The capstone notebooks' approach: sequential GET, full decode, resize, save, one image at a time."""
    from PIL import Image

    output.mkdir(parents=True, exist_ok=True)
    if s3.is_s3_uri(source):
        client = s3.client(endpoint)
        bucket, prefix = s3.parse_s3_uri(source)
        keys = [k for k in s3.list_keys(client, bucket, prefix + "bin-images/")]
        read = lambda key: s3.get(client, bucket, key)  # noqa: E731
        metadata_key = lambda key: key.replace("bin-images/", "metadata/").replace(".jpg", ".json")  # noqa: E731
    else:
        keys = sorted(str(p) for p in (Path(source) / "bin-images").glob("*.jpg"))
        read = lambda key: Path(key).read_bytes()  # noqa: E731
        metadata_key = lambda key: key.replace("bin-images", "metadata").replace(".jpg", ".json")  # noqa: E731
    for key in keys:
        count = json.loads(read(metadata_key(key)))["EXPECTED_QUANTITY"]
        image = Image.open(io.BytesIO(read(key))).convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        (output / str(count)).mkdir(exist_ok=True)
        image.save(output / str(count) / Path(key).name, quality=90)
    return len(keys)


def anonymous_rss(pid: int) -> int:
    """Bytes of anonymous resident memory (RssAnon): what the process needs, without the page cache of files it has
    memory-mapped (Arrow files being written out), which RSS also counts and the kernel reclaims at will."""
    with open(f"/proc/{pid}/status") as status:
        return next((int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:")), 0)  # 0: exited


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(seconds, peak RSS, peak anonymous RSS) of the process and all its children, in MiB, sampled every 20 ms."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent, peak, peak_anonymous = psutil.Process(process.pid), 0, 0
    while process.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
            peak_anonymous = max(peak_anonymous, sum(anonymous_rss(p.pid) for p in tree))
        except (psutil.Error, OSError):
            pass
        time.sleep(0.02)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
    return time.perf_counter() - start, peak / 2**20, peak_anonymous / 2**20


def synthetic(n: int) -> Path:
    folder = RESULTS / f"synthetic-{n}"
    subprocess.run([sys.executable, "-m", "data.synthetic", "--output", str(folder), "--num_images", str(n),
                    "--seed", "0", "--num_proc", str(os.cpu_count() or 1)], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return folder


def build_command(source: str, output: Path, num_proc: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "data.build", "--source", source, "--output", str(output), "--overwrite",
            "--num_proc", str(num_proc), "--max_count", "-1", *extra]


def naive_command(source: str, output: Path, endpoint: str | None = None) -> list[str]:
    endpoint_args = [endpoint] if endpoint else []
    return [sys.executable, "-m", "bench.build_speed", "--naive", source, str(output), *endpoint_args]


def bench_s3(args: BuildBenchArguments, cores: int) -> list[dict]:
    bucket = synthetic(args.s3_images)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "bench.slow_s3", "--port", str(port), "--delay_ms",
                               str(args.delay_ms)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rows = []
    try:
        wait_for_http(f"{endpoint}/moto-api/", process=server)
        env = aws_env(endpoint)
        os.environ.update(env)
        client = s3.client(endpoint)
        client.create_bucket(Bucket="bench-abid")
        # Public like s3://aft-vbi-pds, which data.build reads anonymously.
        public = {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                  "Resource": ["arn:aws:s3:::bench-abid", "arn:aws:s3:::bench-abid/*"]}
        client.put_bucket_policy(Bucket="bench-abid", Policy=json.dumps({"Version": "2012-10-17",
                                                                         "Statement": [public]}))
        s3.upload_dir(client, bucket, "s3://bench-abid/mirror", workers=64)
        work = RESULTS / "build-s3"
        stand_in = psutil.Process(server.pid)

        def stand_in_cpu() -> float:
            times = stand_in.cpu_times()
            return times.user + times.system

        runs = []
        for name, command in (("naive loop", naive_command("s3://bench-abid/mirror/", work / "naive", endpoint)),
                              ("data.build", build_command("s3://bench-abid/mirror", work / "built", cores,
                                                           "--endpoint_url", endpoint, "--unsigned"))):
            before = stand_in_cpu()
            runs.append((name, *measure(command, env), stand_in_cpu() - before))
        for name, seconds, rss, anonymous, server_cpu in runs:
            # The stand-in serves every request on these same cores; a real bucket's work is not on our CPUs.
            rows.append({"source": f"S3 (+{args.delay_ms:g} ms/request)", "images": args.s3_images, "method": name,
                         "processes": 1 if name == "naive loop" else cores,
                         "images_per_s": round(args.s3_images / seconds, 1), "peak_rss_mib": round(rss),
                         "peak_anonymous_mib": round(anonymous),
                         "stand_in_cpu_share": f"{server_cpu / (seconds * cores):.0%}"})
        naive, built = runs[0][1:], runs[1][1:]
        rows[-1]["speedup"] = round(naive[0] / built[0], 1)
    finally:
        stop(server)
    return rows


def bench_local(source: Path, n: int, label: str) -> list[dict]:
    work = RESULTS / f"build-local-{label}"
    naive = measure(naive_command(str(source), work / "naive"))
    built = measure(build_command(str(source), work / "built", 1))
    return [{"source": f"local folder ({label})", "images": n, "method": name, "processes": 1,
             "images_per_s": round(n / seconds, 1), "peak_rss_mib": round(rss), "peak_anonymous_mib": round(anonymous)}
            for name, (seconds, rss, anonymous) in (("naive loop", naive), ("data.build", built))]


def main() -> None:
    (args,) = HfArgumentParser(BuildBenchArguments).parse_args_into_dataclasses()
    if args.naive:
        naive_loop(args.naive[0], Path(args.naive[1]), args.naive[2] if len(args.naive) > 2 else None)
        return
    cores = os.cpu_count() or 1
    rows = bench_s3(args, cores)
    for n in args.sizes:
        rows += bench_local(synthetic(n), n, f"synthetic {n}")
    if (ABID_SAMPLE / "bin-images").is_dir():
        rows += bench_local(ABID_SAMPLE, len(list((ABID_SAMPLE / "bin-images").glob("*.jpg"))), "real ABID sample")
    info = machine()
    save_results("build_speed", {"machine": info, "delay_ms": args.delay_ms, "rows": rows})
    columns = ["source", "images", "method", "processes", "images_per_s", "peak_rss_mib", "peak_anonymous_mib",
               "stand_in_cpu_share", "speedup"]
    print(f"\nMachine: {describe(info)}\n\n{markdown_table(rows, columns)}")


if __name__ == "__main__":
    main()
