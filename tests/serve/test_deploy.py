"""``make deploy-model`` against the local AWS endpoint.

The endpoint has CreateModel, CreateEndpointConfig and CreateEndpoint but no
UpdateEndpoint: the update is checked as the request botocore validates
against the service model, caught just before it would be sent.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse

from conf import compose
from conf.errors import ConfigError
from pipelines.sagemaker import deploy

ROLE = "arn:aws:iam::123456789012:role/claim-frequency-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/claim-frequency:1"
GROUP = "claim-frequency"
BASE = [f"sagemaker.role_arn={ROLE}"]


def register(sm: Any, status: str, version_tag: str = "1") -> str:
    """A model package as the pipeline's Register step creates it."""
    return sm.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [
                {"Image": IMAGE, "ModelDataUrl": f"s3://bucket/model-{version_tag}.tar.gz"}
            ],
            "SupportedContentTypes": ["text/csv", "application/json", "application/x-parquet"],
            "SupportedResponseMIMETypes": ["application/json", "text/csv"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large", "ml.m5.xlarge"],
            "SupportedTransformInstanceTypes": ["ml.m5.large"],
        },
    )["ModelPackageArn"]


@pytest.fixture
def sm(aws: str) -> Any:
    client = boto3.client("sagemaker", region_name="us-east-1")
    client.create_model_package_group(ModelPackageGroupName=GROUP)
    return client


def capture_update(sm: Any) -> list[dict[str, Any]]:
    """Answer UpdateEndpoint locally once botocore has validated and serialised it."""
    sent: list[dict[str, Any]] = []

    def before_call(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        sent.append(json.loads(params["body"]))
        arn = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/claim-frequency"
        return AWSResponse("", 200, {}, None), {"EndpointArn": arn}

    sm.meta.events.register("before-call.sagemaker.UpdateEndpoint", before_call)
    return sent


def name_rule(operation: str, member: str) -> tuple[int, str]:
    shape = (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .operation_model(operation)
        .input_shape.members[member]
    )
    return shape.metadata["max"], shape.metadata["pattern"]


def test_refuses_when_nothing_is_approved(sm: Any, capsys: pytest.CaptureFixture[str]) -> None:
    register(sm, "PendingManualApproval")
    register(sm, "Rejected", "2")
    assert deploy.main(BASE) == 2
    err = capsys.readouterr().err
    assert "No Approved model package in group 'claim-frequency' (2 packages" in err
    assert "Traceback" not in err
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_models()["Models"] == []


def test_creates_a_realtime_endpoint_from_the_latest_approved(
    sm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    register(sm, "Approved", "1")
    newest = register(sm, "Approved", "2")
    register(sm, "PendingManualApproval", "3")
    assert deploy.main([*BASE, "deploy.instance_count=2", "deploy.model_server_workers=3"]) == 0
    assert f"Endpoint claim-frequency created: {newest}" in capsys.readouterr().out

    endpoint = sm.describe_endpoint(EndpointName="claim-frequency")
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 2)
    model = sm.describe_model(ModelName=variant["ModelName"])
    # One primary container, never `Containers` (an inference pipeline, which
    # Serverless Inference refuses).
    assert "Containers" not in model or not model["Containers"]
    container = model["PrimaryContainer"]
    assert container["ModelPackageName"] == newest
    assert container["Environment"] == {
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
    }
    assert model["ExecutionRoleArn"] == ROLE
    for operation, member, value in [
        ("CreateModel", "ModelName", variant["ModelName"]),
        ("CreateEndpointConfig", "EndpointConfigName", endpoint["EndpointConfigName"]),
    ]:
        limit, pattern = name_rule(operation, member)
        assert len(value) <= limit and re.fullmatch(pattern, value), value

    # The same package with the same settings: nothing to do.
    assert deploy.main([*BASE, "deploy.instance_count=2", "deploy.model_server_workers=3"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1


def test_serverless_endpoint(sm: Any) -> None:
    arn = register(sm, "Approved")
    cfg = compose([*BASE, "deploy=default", "deploy.mode=serverless"])
    outcome = deploy.deploy(cfg, sm)
    assert (outcome.action, outcome.package_arn) == ("created", arn)
    config = sm.describe_endpoint_config(EndpointConfigName=outcome.endpoint_config)
    (variant,) = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "InstanceType" not in variant
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == arn
    assert not model.get("Containers")


def test_update_goes_through_a_new_endpoint_config(sm: Any) -> None:
    register(sm, "Approved", "1")
    cfg = compose(BASE)
    first = deploy.deploy(cfg, sm, now=datetime(2026, 1, 1, tzinfo=UTC))
    newer = register(sm, "Approved", "2")
    sent = capture_update(sm)

    second = deploy.deploy(cfg, sm, now=datetime(2026, 1, 2, tzinfo=UTC))

    assert second.action == "updated" and second.package_arn == newer
    assert second.endpoint_config != first.endpoint_config
    assert sent == [
        {
            "EndpointName": "claim-frequency",
            "EndpointConfigName": second.endpoint_config,
            "RetainAllVariantProperties": False,
        }
    ]
    new_config = sm.describe_endpoint_config(EndpointConfigName=second.endpoint_config)
    model = sm.describe_model(ModelName=new_config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == newer


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["deploy.mode=serverless", "deploy.serverless_memory_mb=1000"], "serverless_memory_mb"),
        (["deploy.instance_type=ml.g5.xlarge"], "ml.g5.xlarge is not among"),
        (["sagemaker.role_arn=null"], "sagemaker.role_arn"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_created(
    sm: Any, overrides: list[str], words: str
) -> None:
    register(sm, "Approved")
    with pytest.raises(ConfigError, match=re.escape(words)):
        deploy.deploy(compose([*BASE, *overrides]), sm)
    assert sm.list_models()["Models"] == []


def test_an_unknown_mode_fails_at_compose_naming_the_override(
    sm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy.main([*BASE, "deploy.mode=batch"]) == 2
    err = capsys.readouterr().err
    assert "deploy.mode=batch" in err and "Traceback" not in err
