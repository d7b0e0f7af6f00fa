"""Endpoints: real-time on instances, serverless or asynchronous, running our handler; a predictor; deletion."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from sagemaker.async_inference import AsyncInferenceConfig
from sagemaker.deserializers import JSONDeserializer
from sagemaker.predictor import Predictor
from sagemaker.serializers import IdentitySerializer
from sagemaker.serverless import ServerlessInferenceConfig
from sagemaker.utils import name_from_base

from cloud.sagemaker import autoscaling
from cloud.sagemaker.model import ModelArguments, build_model, check_model, region_field
from cloud.sagemaker.session import NAME, ConfigError, check_region, check_s3_uri, session


@dataclass
class EndpointArguments:
    endpoint_name: str = field(metadata={"help": "Endpoint to create (its endpoint config gets the same name, its "
                                                 "model the name and a time stamp)."})
    instance_type: str = field(default="ml.m5.xlarge", metadata={"help": "Instance type of a real-time or async "
                                                                         "endpoint (ml.g5.xlarge for a GPU)."})
    instance_count: int = field(default=1, metadata={"help": "Instances behind the endpoint."})
    serverless_memory_mb: int | None = field(default=None, metadata={
        "help": "Serverless endpoint with this much memory (1024-6144, steps of 1024) instead of instances."})
    serverless_max_concurrency: int = field(default=5, metadata={"help": "Concurrent requests of a serverless "
                                                                         "endpoint."})
    async_output_path: str | None = field(default=None, metadata={
        "help": "Asynchronous endpoint writing its answers under this s3:// prefix."})
    wait: bool = field(default=True, metadata={"help": "Wait until the endpoint is in service."})
    autoscale: str | None = field(default=None, metadata={
        "help": "MIN:MAX instances: Application Auto Scaling target tracking on invocations per instance "
                "(needs --target_invocations; waits until the endpoint is in service to register it)."})
    target_invocations: float | None = field(default=None, metadata={
        "help": "With --autoscale: invocations per instance per minute to keep near (see the README's sizing)."})


@dataclass
class DeleteArguments:
    endpoint_name: str = field(metadata={"help": "Endpoint to delete, with its endpoint config, model(s) and "
                                                 "autoscaling."})
    region: str | None = region_field()


@dataclass
class StatusArguments:
    endpoint_name: str = field(metadata={"help": "Endpoint to describe: status, variants, autoscaling."})
    region: str | None = region_field()


class BinCountPredictor(Predictor):
    """The endpoint from Python: ``count(path or bytes)`` sends one image with its content type, returns the answer."""

    def __init__(self, endpoint_name: str, sagemaker_session: Any = None, **kwargs: Any):
        super().__init__(endpoint_name, sagemaker_session, serializer=IdentitySerializer("image/jpeg"),
                         deserializer=JSONDeserializer(), **kwargs)

    def count(self, image: str | Path | bytes) -> dict:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        return self.predict(data, initial_args={"ContentType": image_content_type(data)})


def image_content_type(data: bytes) -> str:
    """image/jpeg, image/png, ... from the image's own header, whatever its file is called."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME[image.format]
    except (UnidentifiedImageError, KeyError):
        raise ValueError("not an image the endpoint reads (JPEG, PNG, WebP, BMP, GIF, TIFF)") from None


def deploy(model: ModelArguments, endpoint: EndpointArguments) -> Predictor:
    """Create the model, endpoint config and endpoint: real-time on instances, serverless, or asynchronous."""
    if not NAME.match(endpoint.endpoint_name):
        raise ConfigError(f"invalid endpoint name {endpoint.endpoint_name!r}: letters, digits and hyphens, up to 63")
    serverless = None
    if endpoint.serverless_memory_mb is not None:
        if endpoint.async_output_path:
            raise ConfigError("an endpoint is serverless or asynchronous, not both")
        if endpoint.serverless_memory_mb not in range(1024, 6145, 1024):
            raise ConfigError(f"--serverless_memory_mb must be 1024, 2048, ... or 6144, got "
                              f"{endpoint.serverless_memory_mb}")
        serverless = ServerlessInferenceConfig(memory_size_in_mb=endpoint.serverless_memory_mb,
                                               max_concurrency=endpoint.serverless_max_concurrency)
    if endpoint.async_output_path:
        check_s3_uri(endpoint.async_output_path, "--async_output_path")
    scaling = checked_autoscale(endpoint)
    instance_type = None if serverless else endpoint.instance_type
    model = check_model(model, instance_type)
    hosted = build_model(model, instance_type, name_from_base(endpoint.endpoint_name), BinCountPredictor)
    asynchronous = AsyncInferenceConfig(output_path=endpoint.async_output_path) if endpoint.async_output_path else None
    predictor = hosted.deploy(
        initial_instance_count=None if serverless else endpoint.instance_count, instance_type=instance_type,
        serverless_inference_config=serverless, async_inference_config=asynchronous,
        endpoint_name=endpoint.endpoint_name, wait=endpoint.wait)
    if scaling:  # a variant can be registered once it is in service
        waiter = hosted.sagemaker_session.sagemaker_client.get_waiter("endpoint_in_service")
        waiter.wait(EndpointName=endpoint.endpoint_name, WaiterConfig={"Delay": 15, "MaxAttempts": 240})
        autoscaling.enable(scaling_client(hosted.sagemaker_session), endpoint.endpoint_name, scaling)
    return predictor


def checked_autoscale(endpoint: EndpointArguments) -> autoscaling.Autoscale | None:
    """The --autoscale settings, checked before any API call (None without --autoscale)."""
    if endpoint.autoscale is None:
        if endpoint.target_invocations is not None:
            raise ConfigError("--target_invocations goes with --autoscale MIN:MAX")
        return None
    if endpoint.serverless_memory_mb is not None:
        raise ConfigError("a serverless endpoint scales itself: drop --autoscale")
    scaling = autoscaling.Autoscale.parse(endpoint.autoscale, endpoint.target_invocations)
    if not scaling.min_instances <= endpoint.instance_count <= scaling.max_instances:
        raise ConfigError(f"--instance_count {endpoint.instance_count} is outside --autoscale {endpoint.autoscale}")
    return scaling


def scaling_client(sagemaker_session: Any) -> Any:
    return sagemaker_session.boto_session.client("application-autoscaling")


def status(endpoint_name: str, region: str | None = None) -> dict:
    """The endpoint's status, its variants' instance counts and their autoscaling (None where there is none)."""
    sagemaker_session = session(check_region(region), None)
    described = sagemaker_session.sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    scaling = scaling_client(sagemaker_session)
    variants = [{"variant": variant["VariantName"], "instances": variant.get("CurrentInstanceCount"),
                 "autoscaling": autoscaling.describe(scaling, endpoint_name, variant["VariantName"])}
                for variant in described.get("ProductionVariants", [])]
    return {"endpoint": endpoint_name, "status": described["EndpointStatus"], "variants": variants}


def delete(endpoint_name: str, region: str | None = None) -> list[str]:
    """Delete an endpoint, its endpoint config and its model(s); returns what was deleted."""
    sagemaker_session = session(check_region(region), None)
    client = sagemaker_session.sagemaker_client
    config = client.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    variants = client.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    scaling = [removed for variant in variants for removed in autoscaling.disable(
        scaling_client(sagemaker_session), endpoint_name, variant["VariantName"])]
    client.delete_endpoint(EndpointName=endpoint_name)
    client.delete_endpoint_config(EndpointConfigName=config)
    models = sorted({variant["ModelName"] for variant in variants})
    for model in models:
        client.delete_model(ModelName=model)
    return [f"endpoint {endpoint_name}", f"endpoint config {config}", *(f"model {model}" for model in models),
            *scaling]
