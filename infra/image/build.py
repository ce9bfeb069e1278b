"""Build the image from this source, and push it to ECR.

``push`` pushes the tag built from the current source to the ECR registry of
``sagemaker.region`` and records its URI as ``sagemaker.image_uri`` in
``conf/sagemaker/stack.yaml``, where ``make upsert-pipeline`` picks it up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from infra.image.base import STANDIN_LABEL, STANDIN_VALUE, is_standin
from infra.image.engine import DEFAULT_PLATFORM, Engine, ImageError, image_labels, run
from infra.image.record import record_image_uri
from infra.image.registry import check_repository, protect_registered, registry_credentials
from infra.image.tag import SourceTag, image_name
from pipelines.sagemaker.ecr import tag_exists

DOCKERFILE = "container/Dockerfile"
# The only manifest SageMaker's CreateModel accepts: Docker v2 schema 2. It refuses OCI
# manifests and OCI indexes ("Unsupported manifest media type"), which podman builds by
# default and BuildKit pushes with attestations or the containerd image store.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# Per engine, the build flags that give a Docker v2 schema 2 image.
MANIFEST_FLAGS = {
    "podman": ("--format", "docker"),
    "docker": ("--provenance=false", "--sbom=false", "--output", "type=docker"),
    "finch": ("--provenance=false", "--output", "type=docker"),
}
# Labels the Dockerfile sets: the source revision and the base the image was built on.
REVISION_LABEL = "org.opencontainers.image.revision"
BASE_LABEL = "io.claim-frequency.base-image"


def build_command(
    engine: Engine,
    image: str,
    revision: str,
    platform: str = DEFAULT_PLATFORM,
    base: str | None = None,
    ca_bundle: Path | None = None,
) -> list[str]:
    """Build the image from the repository root (the build context)."""
    cmd = engine.cmd("build", *engine.limit_flags, "--platform", platform, "-f", DOCKERFILE)
    cmd += MANIFEST_FLAGS.get(engine.name, ())
    cmd += ["-t", image, "--build-arg", f"REVISION={revision}"]
    if base:
        cmd += ["--build-arg", f"BASE_IMAGE={base}"]
    if ca_bundle:
        cmd += ["--secret", f"id=ca-bundle,src={Path(ca_bundle).resolve()}"]
    return [*cmd, "."]


def login_command(engine: Engine, registry: str) -> list[str]:
    """Log in to a registry with the password on stdin."""
    return engine.cmd("login", "--username", "AWS", "--password-stdin", registry)


def tag_command(engine: Engine, source: str, target: str) -> list[str]:
    """Give a local image another name."""
    return engine.cmd("tag", source, target)


def push_command(engine: Engine, target: str) -> list[str]:
    """Push a local image to its registry."""
    return engine.cmd("push", target)


def check_ca_bundle(ca_bundle: Path | None) -> None:
    """Fail before anything runs if the given CA bundle is not a file."""
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise ImageError(f"--ca-bundle {ca_bundle}: no such file.")


def build(
    engine: Engine,
    image: str,
    source: SourceTag,
    platform: str = DEFAULT_PLATFORM,
    base: str | None = None,
    ca_bundle: Path | None = None,
) -> None:
    """Build ``image`` from the source ``source`` names."""
    check_ca_bundle(ca_bundle)
    try:
        run(build_command(engine, image, source.tag, platform, base, ca_bundle))
    except ImageError as err:
        hint = (
            " If the build could not download packages (certificate verify failed), "
            'pass your proxy\'s CA bundle: ARGS="--ca-bundle <file>".'
        )
        raise ImageError(str(err) + ("" if ca_bundle else hint)) from None
    labels = image_labels(engine, image)
    note = " on the stand-in base (push-image refuses it)" if is_standin(labels) else ""
    print(f"Built {image}{note}", flush=True)


def check_pushable(source: SourceTag, allow_dirty: bool) -> None:
    """Refuse a source with uncommitted changes unless ``allow_dirty``."""
    if source.dirty and not allow_dirty:
        shown = ", ".join(source.changed[:5]) + (" ..." if len(source.changed) > 5 else "")
        raise ImageError(
            f"The image's sources have uncommitted changes ({shown}): commit them and "
            f"build again, or push the image {source.tag} anyway with ARGS=--allow-dirty."
        )


def push(engine: Engine, sagemaker: DictConfig, source: SourceTag, record: Path) -> str:
    """Push the image built from ``source`` to ECR, record and return its URI.

    ``sagemaker`` is the config's section of that name (region, repository,
    model package group).
    """
    repository = sagemaker.ecr_repository
    local = image_name(repository, source)
    if is_standin(image_labels(engine, local)):
        raise ImageError(
            f"{local} was built on the stand-in base made from Debian packages "
            f"(label {STANDIN_LABEL}={STANDIN_VALUE}): it is for tests on this machine only. "
            "Build on the official base (make build-image without --base) and push that."
        )
    from botocore.exceptions import BotoCoreError, ClientError

    from pipelines.sagemaker.session import session as aws_session

    try:
        session = aws_session(sagemaker.region)
        ecr = session.client("ecr")
        check_repository(ecr, repository)
        registry, password = registry_credentials(ecr)
        uri = f"{registry}/{local}"
        protected = protect_registered(
            ecr,
            session.client("sagemaker"),
            f"{registry}/{repository}",
            sagemaker.model_package_group,
        )
        pushed = tag_exists(ecr, repository, source.tag)
    except (BotoCoreError, ClientError) as exc:
        raise ImageError(f"ECR refused: {exc}") from exc
    for tag in protected:
        print(f"Kept from expiry: {tag} (a registered model package uses it)", flush=True)
    if pushed:
        print(f"{uri} is already in ECR (tags are immutable): not pushed again.", flush=True)
    else:
        run(login_command(engine, registry), stdin=password)
        run(tag_command(engine, local, uri))
        run(push_command(engine, uri))
    check_manifest(ecr, repository, source.tag, uri)
    record_image_uri(record, uri)
    print(f"Pushed {uri}\nRecorded sagemaker.image_uri in {record}: upsert uses it.", flush=True)
    return uri


def check_manifest(ecr: Any, repository: str, tag: str, uri: str) -> None:
    """Refuse to record an image whose manifest SageMaker cannot use (CreateModel)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        details = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        media = details["imageDetails"][0].get("imageManifestMediaType")
    except (BotoCoreError, ClientError) as exc:
        raise ImageError(f"Cannot read the pushed image {uri} back from ECR: {exc}") from exc
    if media != DOCKER_MANIFEST:
        raise ImageError(
            f"ECR holds {uri} with the manifest type {media}, which SageMaker refuses "
            f"(CreateModel accepts only {DOCKER_MANIFEST}): it was not recorded. Build it "
            "again with `make build-image` (which asks every engine for a Docker manifest) "
            "and push a new commit."
        )
