"""Serve the bin counter on SageMaker with the Hugging Face inference container (SageMaker SDK v2).

    python -m inference.deploy package --model_dir runs/model [--onnx]
    python -m inference.deploy deploy --endpoint_name bincount --model_data s3://bucket/bincount/models/.../model.tar.gz
    python -m inference.deploy deploy --endpoint_name bincount --hub_model_id org/bincount --serverless_memory_mb 4096
    python -m inference.deploy deploy --endpoint_name bincount --model_data ... --async_output_path s3://bucket/async/
    python -m inference.deploy batch-transform --model_data ... --input_uri s3://bucket/bin-images/ \
        --output_uri s3://bucket/counts/ --results counts.csv
    python -m inference.deploy collect --input_uri s3://bucket/bin-images/ --output_uri s3://bucket/counts/ \
        --results counts.jsonl
    python -m inference.deploy deploy --endpoint_name bincount --model_data ... --autoscale 1:4 --target_invocations 600
    python -m inference.deploy status --endpoint_name bincount
    python -m inference.deploy delete --endpoint_name bincount
    python -m inference.deploy space --model runs/model --space_id org/bin-check

Role, region and bucket come from --role/$SAGEMAKER_ROLE, --region/$AWS_REGION and --bucket/$SAGEMAKER_BUCKET, and
every setting is checked before the first API call. Each command is a function for notebooks: ``package``,
``deploy``, ``batch_transform``, ``collect``, ``delete``; ``BinCountPredictor.count`` sends an image file.

Every endpoint runs our handler (inference/handler.py, shipped as ``code/inference.py``), never the toolkit's
default pipeline (see cloud/sagemaker/model.py). The commands live in ``cloud/sagemaker/``: model.py (model.tar.gz
and the SageMaker model), endpoint.py, transform.py; this module is their command line. The handler and
``inference.predict`` (result files) are imported where they are used: they bring torch, which packaging, deploying
and deleting do without, so the command line answers in seconds.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any

# SDK v2 is this project's pin: no deprecation warning on every run (set before sagemaker is imported)
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

from botocore.exceptions import BotoCoreError, ClientError

from cloud.sagemaker.containers import container_image
from cloud.sagemaker.endpoint import BinCountPredictor, DeleteArguments, EndpointArguments, StatusArguments, delete, \
    deploy, image_content_type, status
from cloud.sagemaker.model import ModelArguments, PackageArguments, build_tarball, code_files, endpoint_env, package
from cloud.sagemaker.session import check_region
from cloud.sagemaker.transform import NO_ANSWER, CollectArguments, TransformArguments, batch_transform, \
    check_results, collect, write_results
from core.cli import Subcommand, Subcommands, entry_point
from inference.space import SpaceArguments, deploy_space

__all__ = ["NO_ANSWER", "BinCountPredictor", "CollectArguments", "DeleteArguments", "EndpointArguments",
           "ModelArguments", "PackageArguments", "TransformArguments", "batch_transform", "build_tarball", "code_files",
           "collect", "container_image", "delete", "deploy", "endpoint_env", "image_content_type", "main", "package",
           "status", "StatusArguments", "write_results"]

COMMANDS = Subcommands("python -m inference.deploy", {
    "package": Subcommand((PackageArguments,), "Upload model.tar.gz: a training output folder and our handler."),
    "deploy": Subcommand((ModelArguments, EndpointArguments), "Create an endpoint (real-time, serverless or async)."),
    "batch-transform": Subcommand((ModelArguments, TransformArguments),
                                  "Count every image under an S3 prefix with a transform job."),
    "collect": Subcommand((CollectArguments,), "Gather a finished transform job's answers into a results file."),
    "delete": Subcommand((DeleteArguments,), "Delete an endpoint, its endpoint config and its model(s)."),
    "space": Subcommand((SpaceArguments,), "Write a Gradio Space for the bin-check page and push it to the Hub."),
    "status": Subcommand((StatusArguments,), "An endpoint's status, instances and autoscaling, as JSON."),
}, description=__doc__)


def run(command: str, groups: Iterable[Any]) -> str:
    """Run one command; returns the line that reports what it did."""
    groups = list(groups)
    if command == "package":
        (args,) = groups
        return f"uploaded {package(args.model_dir, args.s3_uri, args.region, args.bucket, args.onnx)}"
    if command == "deploy":
        predictor = deploy(*groups)
        return f"endpoint {predictor.endpoint_name} {'in service' if groups[1].wait else 'creating'}"
    if command == "batch-transform":
        return f"transform job {batch_transform(*groups)} {'done' if groups[1].wait else 'started'}"
    if command == "collect":
        (args,) = groups
        check_results(args.results)
        write_results(collect(args.input_uri, args.output_uri, check_region(args.region)), args.results)
        return f"collected into {args.results}"
    if command == "delete":
        (args,) = groups
        return "deleted " + ", ".join(delete(args.endpoint_name, args.region))
    if command == "space":
        return deploy_space(*groups)
    if command == "status":
        (args,) = groups
        return json.dumps(status(args.endpoint_name, args.region), indent=1)
    raise ValueError(f"unknown command {command!r}")


@entry_point(user_errors=(ValueError, OSError, BotoCoreError, ClientError))
def main(argv: list[str] | None = None) -> int:
    command, groups, _ = COMMANDS.parse(argv)
    print(run(command, groups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
