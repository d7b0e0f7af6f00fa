"""The whole pipeline on the embedded default, offline: ``python -m demo`` (or ``make demo``).

1. Synthesise an ABID-shaped bucket (``data.synthetic``) and serve it from a local S3 endpoint (moto_server on
   127.0.0.1), so the dataset is built through the same S3 code path as the real bucket (``data.build``).
2. Train a small model from scratch on the CPU (``train.run`` with ``train/configs/tiny-resnet``); print the test
   table (accuracy, RMSE, per-class accuracy and RMSE); save the confusion matrix and training curves.
3. Load the model with ``pipeline("image-classification")``, start the local endpoint (``inference.serve``) and ask it
   for counts, with and without an expected quantity (verify mode).
4. Score the model on the synthetic test split and on real ABID bins it has never seen (``../shared/abid-sample`` and
   ``../shared/abid-real`` beside the checkout, each skipped when absent), next to the constant answer 3, so the gap
   between synthetic and real bins shows at once.
5. Print where every artifact is; stop every process it started.

Each stage runs as its own ``python -m`` command and reads only the previous stage's artifacts. Re-running reuses what
is already built; ``--rebuild`` starts over. The same command on real data and a real checkpoint::

    python -m demo --source s3://aft-vbi-pds --limit 20000 --model_name_or_path google/vit-base-patch16-224-in21k \\
        --learning_rate 5e-5 --epochs 3
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from cloud import s3
from cloud.local import aws_env, free_port, moto_server, stop, wait_for_http

ROOT = Path(__file__).resolve().parent
BUCKET = "s3://demo-abid-bucket"
REAL_SAMPLE = ROOT.parent / "shared" / "abid-sample"  # real ABID bins beside the checkout, when present
REAL_BINS = ROOT.parent / "shared" / "abid-real"  # 1,050 more, listed in labels.csv
DEFAULT_MODEL = "train/configs/tiny-resnet"
DEFAULT_SIZE = 96
# The real-bin recipe's count-preserving augmentation, heavier than train.run's default: on real bins the
# synthetic-only model counts better and raises fewer false alarms with it.
RECIPE = json.loads((ROOT / "train" / "recipes" / "small-real-cpu.json").read_text())


@dataclass
class DemoArguments:
    workdir: str = field(default="runs/demo", metadata={"help": "Where every artifact goes."})
    num_images: int = field(default=3000, metadata={"help": "Synthetic bins to generate."})
    seed: int = field(default=0, metadata={"help": "Seed of the synthetic bins and of training."})
    source: str | None = field(default=None, metadata={
        "help": "Build from this source instead (e.g. s3://aft-vbi-pds, the real bucket); skips the synthetic step."})
    limit: int | None = field(default=None, metadata={"help": "Consider only the first N bins of the source."})
    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Model to train: a config folder (from scratch) or a checkpoint such as "
                "google/vit-base-patch16-224-in21k."})
    image_size: int | None = field(default=None, metadata={
        "help": f"Input resolution (default: {DEFAULT_SIZE} for {DEFAULT_MODEL}, whose processor says 128, which keeps "
                "the demo inside 10 minutes on 2 cores; else the model's own)."})
    epochs: float = field(default=15, metadata={"help": "Training epochs."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak learning rate."})
    batch_size: int = field(default=32, metadata={"help": "Training batch size."})
    crop_scale: float = field(default=RECIPE["crop_scale"], metadata={
        "help": "Smallest area fraction the random crop keeps (default: the real-bin recipe's)."})
    rotation_degrees: float = field(default=RECIPE["rotation_degrees"], metadata={
        "help": "Largest random rotation (default: the real-bin recipe's)."})
    color_jitter: float = field(default=RECIPE["color_jitter"], metadata={
        "help": "Brightness/contrast/saturation jitter strength (default: the real-bin recipe's)."})
    target_false_alarm: float = field(default=0.02, metadata={
        "help": "Share of correctly recorded bins the saved verify thresholds may flag as mismatch, on the synthetic "
                "validation split. Lower than train.run's 5%: the model trains on synthetic bins and checks real "
                "ones, and on real bins its false alarms ran 2-5 times its validation share (see the README)."})
    num_queries: int = field(default=3, metadata={"help": "Test images sent to the local endpoint."})
    rebuild: bool = field(default=False, metadata={"help": "Start over instead of reusing built artifacts."})
    real_sample: str = field(default=str(REAL_SAMPLE), metadata={
        "help": "Real ABID bins (bin-images/ + metadata/) the model is also scored on; skipped when absent."})
    real_bins: str = field(default=str(REAL_BINS), metadata={
        "help": "More real ABID bins, listed in labels.csv (image path, count), scored too; skipped when absent."})


def stage(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def python(module: str, *args: str, env: dict[str, str] | None = None) -> None:
    """Run one stage as its own process, as a user would; its progress shows on the console."""
    command = [sys.executable, "-m", module, *args]
    print("$ python -m " + " ".join([module, *args]), flush=True)
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if result.returncode:
        raise SystemExit(f"error: {module} failed with exit code {result.returncode}")


def build_dataset(args: DemoArguments, work: Path, dataset: Path) -> None:
    build = ["--output", str(dataset), "--num_proc", str(os.cpu_count() or 1)]
    if args.limit:
        build += ["--limit", str(args.limit)]
    if args.source:
        python("data.build", "--source", args.source, *build)
        return
    bucket = work / "bucket"
    python("data.synthetic", "--output", str(bucket), "--num_images", str(args.num_images), "--seed", str(args.seed))
    with moto_server(log_path=str(work / "moto.log")) as endpoint:
        print(f"local S3 endpoint (moto_server) at {endpoint}", flush=True)
        env = aws_env(endpoint)
        client = s3.client(endpoint, unsigned=True)  # the local endpoint takes anonymous requests
        client.create_bucket(Bucket=s3.parse_s3_uri(BUCKET)[0])
        print(f"uploaded {s3.upload_dir(client, bucket, BUCKET)} files to {BUCKET}", flush=True)
        python("data.build", "--source", BUCKET, "--endpoint_url", endpoint, *build, env=env)
    print("stopped the local S3 endpoint", flush=True)


def train(args: DemoArguments, dataset: Path, model: Path) -> None:
    size = args.image_size
    if size is None and args.model_name_or_path == DEFAULT_MODEL:
        size = DEFAULT_SIZE
    options = ["--image_size", str(size)] if size else []
    python("train.run", "--dataset", str(dataset), "--model_name_or_path", args.model_name_or_path,
           "--output_dir", str(model), "--num_train_epochs", str(args.epochs), "--learning_rate",
           str(args.learning_rate), "--per_device_train_batch_size", str(args.batch_size), "--seed", str(args.seed),
           "--save_total_limit", "1", "--logging_steps", "20", "--crop_scale", str(args.crop_scale),
           "--rotation_degrees", str(args.rotation_degrees), "--color_jitter", str(args.color_jitter),
           "--target_false_alarm", str(args.target_false_alarm), *options)


def test_images(dataset: Path, n: int) -> list[tuple[str, bytes, int]]:
    """(image id, JPEG bytes, expected quantity) of the first ``n`` test bins."""
    from datasets import Image, load_from_disk

    test = load_from_disk(str(dataset))["test"].cast_column("image", Image(decode=False))
    rows = test.select(range(min(n, len(test))))
    return [(r["image_id"], r["image"]["bytes"], r["expected_quantity"]) for r in rows]


def show_pipeline(model: Path, images: list[tuple[str, bytes, int]]) -> None:
    import io

    from PIL import Image
    from transformers import pipeline

    labels = json.loads((model / "config.json").read_text())["id2label"]
    counter = pipeline("image-classification", model=str(model), top_k=len(labels))
    for image_id, data, quantity in images:
        scores = counter(Image.open(io.BytesIO(data)))
        top = ", ".join(f"{s['label']}: {s['score']:.2f}" for s in scores[:3])
        print(f"bin {image_id} (holds {quantity}): {top} ...  ({len(scores)} counts scored)")


def query_endpoint(model: Path, work: Path, images: list[tuple[str, bytes, int]]) -> None:
    port = free_port()
    log = open(work / "serve.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "inference.serve", "--model", str(model), "--port", str(port)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    print(f"local endpoint (inference.serve) pid {server.pid} at {url}", flush=True)
    try:
        wait_for_http(f"{url}/ping", timeout=120, process=server)

        def invoke(body: bytes, content_type: str):
            request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": content_type})
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.load(answer)

        image_id, data, quantity = images[0]
        answer = invoke(data, "image/jpeg")
        print(f"POST /invocations image/jpeg, bin {image_id} (holds {quantity}): count {answer['count']}, "
              f"expected count {answer['expected_count']:.2f}")
        # Verify mode: the true quantity for each bin, and a wrong one for the first, as an inventory check would.
        expected = [q for _, _, q in images]
        expected[0] += 1
        body = json.dumps({"inputs": [base64.b64encode(d).decode() for _, d, _ in images],
                           "parameters": {"expected_quantity": expected}}).encode()
        for (image_id, _, quantity), answer in zip(images, invoke(body, "application/json")):
            print(f"verify bin {image_id} (holds {quantity}) against {answer['expected_quantity']}: "
                  f"P = {answer['match_probability']}, verdict {answer['verdict']} (predicted {answer['count']})")
    finally:
        stop(server)
        log.close()
        print(f"stopped the local endpoint (pid {server.pid})", flush=True)


def scored_line(name: str, counter, bins: list[tuple[object, int]], mismatch: float) -> str:
    """One table row: accuracy and RMSE of the top count, RMSE of the expected count (the handler's
    ``expected_count``), the constant answer 3's, and verify's false alarms on true records (P(recorded count) at or
    below the mismatch threshold)."""
    import numpy as np

    predicted, expected, truth, alarms = [], [], [], 0
    for image, quantity in bins:
        scores = {int(s["label"]): s["score"] for s in counter(image)}
        predicted.append(max(scores, key=scores.get))
        expected.append(sum(count * score for count, score in scores.items()))
        truth.append(quantity)
        alarms += scores.get(quantity, 0.0) <= mismatch
    p, e, t = np.array(predicted), np.array(expected), np.array(truth)
    rmse = {"top": np.sqrt(np.mean((p - t) ** 2)), "expected": np.sqrt(np.mean((e - t) ** 2)),
            "always 3": np.sqrt(np.mean((3 - t) ** 2))}
    return (f"| {name} | {len(t)} | {100 * np.mean(p == t):.1f} | {rmse['top']:.2f} | {rmse['expected']:.2f} | "
            f"{100 * np.mean(t == 3):.1f} | {rmse['always 3']:.2f} | {100 * alarms / len(t):.1f} |")


def listed_bins(folder: Path, known: set[int]) -> list[tuple[str, int]]:
    """(image path, count) of the bins in ``folder``'s labels.csv whose count the model knows; the pipeline opens
    each path as it scores it."""
    import csv

    with open(folder / "labels.csv", newline="") as listing:
        rows = [row for row in csv.DictReader(listing) if int(row["count"]) in known]
    return [(str(folder / row["path"]), int(row["count"])) for row in rows]


def summary(model: Path, dataset: Path, real: Path, listed: Path) -> str:
    """The test split of the built dataset, and the real bins with counts the model knows (when present)."""
    import io

    from datasets import Image as ImageFeature, load_from_disk
    from PIL import Image
    from transformers import pipeline

    labels = json.loads((model / "config.json").read_text())["id2label"]
    known = {int(name) for name in labels.values() if name.isdigit()}
    verify = model / "verify.json"
    mismatch = json.loads(verify.read_text()).get("mismatch", 0.1) if verify.is_file() else 0.1
    counter = pipeline("image-classification", model=str(model), top_k=len(labels))
    test = load_from_disk(str(dataset))["test"].cast_column("image", ImageFeature(decode=False))
    bins = [(Image.open(io.BytesIO(row["image"]["bytes"])), row["expected_quantity"]) for row in test]
    lines = ["| bins | n | accuracy (%) | RMSE | RMSE, expected count | always 3: accuracy (%) | always 3: RMSE | "
             f"true records called mismatch (%, P <= {mismatch:g}) |", "|---|---|---|---|---|---|---|---|",
             scored_line("synthetic test split", counter, [b for b in bins if b[1] in known], mismatch)]
    if (real / "bin-images").is_dir() and (real / "metadata").is_dir():
        sample = []
        for path in sorted((real / "bin-images").glob("*.jpg")):
            quantity = json.loads((real / "metadata" / f"{path.stem}.json").read_text())["EXPECTED_QUANTITY"]
            if quantity in known:
                sample.append((Image.open(path).convert("RGB"), quantity))
        lines.append(scored_line(f"real ABID sample ({real.name}, {min(known)}-{max(known)} items)", counter, sample,
                                 mismatch))
    else:
        lines.append(f"(real sample not found at {real}: skipped)")
    if (listed / "labels.csv").is_file():
        lines.append(scored_line(f"real ABID bins ({listed.name}, {min(known)}-{max(known)} items)", counter,
                                 listed_bins(listed, known), mismatch))
    else:
        lines.append(f"(real bins not found at {listed}: skipped)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(argv)
    work = (ROOT / args.workdir).resolve()
    if args.rebuild:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    dataset, model = work / "dataset", work / "model"
    started = time.time()

    stage("1/4 data: an ABID-shaped bucket behind a local S3 endpoint, built into a dataset")
    if (dataset / "build_report.json").is_file():
        print(f"reusing the dataset in {dataset}")
    else:
        build_dataset(args, work, dataset)

    stage("2/4 train: a small model from scratch on the CPU, evaluated on the test split")
    if (model / "all_results.json").is_file():
        print(f"reusing the model in {model}\n\n{(model / 'results.md').read_text()}")
    else:
        train(args, dataset, model)

    images = test_images(dataset, args.num_queries)
    stage('3/4 inference: pipeline("image-classification") on test bins')
    show_pipeline(model, images)

    stage("4/4 serve: the local endpoint (SageMaker container contract), with and without expected quantities")
    query_endpoint(model, work, images)

    stage("summary: the model on synthetic test bins and on real bins it has never seen")
    print(summary(model, dataset, Path(args.real_sample), Path(args.real_bins)))

    print(f"\nDone in {time.time() - started:.0f} s. Artifacts:")
    for path, what in [(work / "bucket", "synthetic bucket (bin-images/, metadata/)"),
                       (dataset, "dataset (datasets.load_from_disk), README.md card, class_histogram.png, "
                                 "build_report.json"),
                       (model, "model (pipeline-ready), README.md card, results.md, all_results.json"),
                       (model / "confusion_matrix.png", "confusion matrix"),
                       (model / "training_curves.png", "training curves"),
                       (work / "serve.log", "local endpoint log")]:
        if path.exists():
            print(f"  {path}  — {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
