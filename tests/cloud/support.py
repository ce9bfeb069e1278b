"""What the cloud tests share: account values, archives as jobs write them, scripted quotas."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import boto3
from botocore.stub import Stubber

ROLE = "arn:aws:iam::123456789012:role/sagemaker"
BUCKET = "claims-data"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/claim-frequency:abc"
REGION = "us-east-1"
ACCOUNT = [
    f"sagemaker.role_arn={ROLE}",
    f"sagemaker.bucket={BUCKET}",
    f"sagemaker.image_uri={IMAGE}",
]


def archive(files: dict[str, bytes]) -> bytes:
    """A ``.tar.gz`` of ``files`` (name: content), as a job's model or output archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def quota_client(applied: dict[str, float], defaults: dict[str, float] | None = None) -> Any:
    """A Service Quotas client answering from scripted pages (the local endpoint lacks it)."""
    client = boto3.client("service-quotas", region_name=REGION)
    stub = Stubber(client)

    def page(values: dict[str, float]) -> dict[str, Any]:
        return {
            "Quotas": [
                {"ServiceCode": "sagemaker", "QuotaName": n, "QuotaCode": f"L-{i:08d}", "Value": v}
                for i, (n, v) in enumerate(values.items())
            ]
        }

    stub.add_response("list_service_quotas", page(applied), {"ServiceCode": "sagemaker"})
    stub.add_response(
        "list_aws_default_service_quotas", page(defaults or {}), {"ServiceCode": "sagemaker"}
    )
    stub.activate()
    return client
