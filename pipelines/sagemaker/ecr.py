"""Keeping the images that something still runs: ECR tags the lifecycle policy never expires.

The repository's tags are immutable, so an image is kept by giving it a second
tag with a kept prefix (``infra/template.yaml``'s lifecycle rules 1 and 2):
``registered-<tag>`` for images a model package uses, ``deployed-<tag>`` for
images a deployed pipeline names (added at upsert).
"""

from __future__ import annotations

import sys
from typing import Any

from botocore.exceptions import ClientError

from conf.errors import ConfigError

REGISTERED_PREFIX = "registered-"
DEPLOYED_PREFIX = "deployed-"
TAG_MAX = 128  # ECR's limit on an image tag


def split_image_uri(uri: str) -> tuple[str, str, str]:
    """(registry, repository, tag) of ``<registry>/<repository>:<tag>``; tag '' if none."""
    registry, _, rest = uri.partition("/")
    repository, _, tag = rest.partition(":")
    return registry, repository, tag


def tag_exists(ecr: Any, repository: str, tag: str) -> bool:
    """Whether ``repository:tag`` is in ECR."""
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        return False
    return True


def keep_tag(ecr: Any, repository: str, tag: str, prefix: str) -> str | None:
    """Give ``repository:tag`` the kept tag ``<prefix><tag>``; return it if it was added.

    Nothing is added when the image is gone, when the tag already has a kept
    prefix, or when the kept tag exists.
    """
    keep = f"{prefix}{tag}"[:TAG_MAX]
    if not tag or tag.startswith((REGISTERED_PREFIX, DEPLOYED_PREFIX)):
        return None
    if tag_exists(ecr, repository, keep) or not tag_exists(ecr, repository, tag):
        return None
    image = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}])
    found = image["images"][0]
    media = found.get("imageManifestMediaType")
    ecr.put_image(
        repositoryName=repository,
        imageManifest=found["imageManifest"],
        imageTag=keep,
        **({"imageManifestMediaType": media} if media else {}),
    )
    return keep


def keep_deployed(ecr: Any, image_uri: str) -> str | None:
    """Protect the image a pipeline is upserted with from the lifecycle policy.

    Without permission to tag (or outside ECR) this warns and goes on: the
    pipeline still works until the policy expires its image.
    """
    _, repository, tag = split_image_uri(image_uri)
    try:
        return keep_tag(ecr, repository, tag, DEPLOYED_PREFIX)
    except ClientError as err:
        print(
            f"warning: could not tag {image_uri} {DEPLOYED_PREFIX}{tag} to keep it "
            f"({err.response.get('Error', {}).get('Code', err)}); ECR's lifecycle policy may "
            "expire it while the pipeline still runs it.",
            file=sys.stderr,
        )
        return None


def check_exists(ecr: Any, image_uri: str) -> None:
    """Refuse to start (or schedule) a pipeline whose image is gone from ECR.

    Without permission to read the repository this warns and goes on.
    """
    _, repository, tag = split_image_uri(image_uri)
    if not tag:
        return
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        raise ConfigError(
            f"The pipeline's image {image_uri} is no longer in ECR (expired or deleted): "
            "run `make push-image` and `make upsert-pipeline`, then try again."
        ) from None
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        print(
            f"warning: could not check that {image_uri} is in ECR ({code or err}); going on.",
            file=sys.stderr,
        )


def pipeline_image(definition: dict[str, Any]) -> str | None:
    """The image the pipeline's training step (or first processing step) runs."""
    images = []
    for step in definition.get("Steps", []):
        arguments = step.get("Arguments") or {}
        training = arguments.get("AlgorithmSpecification") or (
            arguments.get("TrainingJobDefinition") or {}
        ).get("AlgorithmSpecification")
        processing = arguments.get("AppSpecification")
        for image in (
            (training or {}).get("TrainingImage"),
            (processing or {}).get("ImageUri"),
        ):
            if isinstance(image, str):
                images.append(image)
    return images[0] if images else None
