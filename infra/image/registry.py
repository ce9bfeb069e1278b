"""ECR: the repository, its login, and keeping registered images from expiry.

Every image a registered model package uses also gets a ``registered-`` tag,
which the repository's lifecycle policy never expires (``infra/template.yaml``;
the tagging itself is ``pipelines.sagemaker.ecr``'s, shared with upsert).
"""

from __future__ import annotations

import base64
from typing import Any

from infra.image.engine import ImageError
from pipelines.sagemaker.ecr import REGISTERED_PREFIX, keep_tag


def registry_credentials(ecr: Any) -> tuple[str, str]:
    """The registry host and the login password from ``ecr.get_authorization_token``."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if user != "AWS" or not password:
        raise ImageError("ECR returned an authorization token in an unexpected form.")
    return data["proxyEndpoint"].removeprefix("https://").rstrip("/"), password


def check_repository(ecr: Any, name: str) -> None:
    """Fail clearly if the ECR repository does not exist."""
    try:
        ecr.describe_repositories(repositoryNames=[name])
    except ecr.exceptions.RepositoryNotFoundException:
        raise ImageError(
            f"ECR repository '{name}' does not exist in {ecr.meta.region_name}: deploy the "
            "infrastructure (make deploy-infra) or set sagemaker.ecr_repository=<name>."
        ) from None


def registered_images(sagemaker: Any, group: str) -> set[str]:
    """Every container image URI the model packages of ``group`` use."""
    images: set[str] = set()
    try:
        pages = sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
        arns = [p["ModelPackageArn"] for page in pages for p in page["ModelPackageSummaryList"]]
    except sagemaker.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return images  # no group yet: nothing registered
        raise ImageError(
            f"Cannot list the model packages of '{group}', whose images a push must keep "
            f"from expiring: {exc}"
        ) from exc
    for arn in arns:
        package = sagemaker.describe_model_package(ModelPackageName=arn)
        for container in package.get("InferenceSpecification", {}).get("Containers", []):
            images.add(container["Image"])
    return images


def protect_registered(ecr: Any, sagemaker: Any, repository_uri: str, group: str) -> list[str]:
    """Tag each image of this repository that a model package uses ``registered-<tag>``.

    The repository's lifecycle policy never expires an image with that tag
    prefix. Returns the tags added.
    """
    repository = repository_uri.rsplit("/", 1)[-1]
    added = []
    for uri in sorted(registered_images(sagemaker, group)):
        name, _, tag = uri.partition(":")
        if name != repository_uri:
            continue
        keep = keep_tag(ecr, repository, tag, REGISTERED_PREFIX)
        if keep:
            added.append(keep)
    return added
