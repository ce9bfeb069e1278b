"""The registered model package claims exactly what the model server does."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest

from conf import compose
from conf.contract import REQUEST_CONTENT_TYPES, RESPONSE_CONTENT_TYPES
from pipelines.sagemaker import cli

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/claim-frequency:1"
BASE = [
    "sagemaker.role_arn=arn:aws:iam::123456789012:role/claim-frequency-sagemaker",
    "sagemaker.bucket=claim-frequency-data",
    f"sagemaker.image_uri={IMAGE}",
]


@pytest.fixture(scope="module")
def register_step(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cfg = compose(BASE)
    text, _ = cli.build_definition(cfg, BASE, tmp_path_factory.mktemp("def"), "us-east-1")
    for step in json.loads(text)["Steps"]:
        if step["Type"] == "Condition":
            for inner in step["Arguments"]["IfSteps"]:
                if inner["Type"] == "RegisterModel":
                    return inner["Arguments"]
    raise AssertionError("no RegisterModel step")


def enum(shape_name: str) -> set[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return set(model.shape_for(shape_name).enum)


def test_declares_what_the_server_supports(register_step: dict[str, Any]) -> None:
    spec = register_step["InferenceSpecification"]
    assert spec["SupportedContentTypes"] == list(REQUEST_CONTENT_TYPES)
    assert spec["SupportedResponseMIMETypes"] == list(RESPONSE_CONTENT_TYPES)
    (container,) = spec["Containers"]
    # The job image itself: hosting and batch transform start it with `serve`.
    assert container["Image"] == IMAGE
    assert "ContainerEntrypoint" not in container


def test_instance_types_come_from_deploy_config_and_are_valid(
    register_step: dict[str, Any],
) -> None:
    spec = register_step["InferenceSpecification"]
    deploy = compose(BASE).deploy
    assert spec["SupportedRealtimeInferenceInstanceTypes"] == list(deploy.inference_instance_types)
    assert spec["SupportedTransformInstanceTypes"] == list(deploy.transform_instance_types)
    assert deploy.instance_type in deploy.inference_instance_types
    assert set(deploy.inference_instance_types) <= enum("ProductionVariantInstanceType")
    assert set(deploy.transform_instance_types) <= enum("TransformInstanceType")
