"""Build, push and try out the shared image with Docker or Finch.

    python -m container.image build     [--tag TAG] [--platform P] [OVERRIDES...]
    python -m container.image push      [--tag TAG] [OVERRIDES...]
    python -m container.image run-local [--tag TAG] [prepare|train|evaluate] [OVERRIDES...]

The tool is ``$CONTAINER_TOOL`` (default ``docker``; ``finch`` works the same).
The image is named after ``sagemaker.ecr_repository`` and pushed to the ECR
registry of ``sagemaker.region``; OVERRIDES are Hydra overrides, so
``sagemaker.ecr_repository=other`` or ``sagemaker.region=eu-west-1`` pick
another target. The tag defaults to the git commit (``-dirty`` if the tree
has uncommitted changes).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from steps.errors import UserError, compose_checked

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "container/Dockerfile"
DEFAULT_PLATFORM = "linux/amd64"  # SageMaker's ml.m5/ml.c5 instances are x86_64
JOBS = ("prepare", "train", "evaluate")
# run-local prepares small synthetic data unless the overrides say otherwise.
RUN_LOCAL_DEFAULTS = ("data.n_rows=20000",)


class ImageError(UserError):
    """The container tool or the registry refused, or a value is missing."""


# --------------------------------------------------------------------- command lines


def container_tool() -> str:
    """The container CLI from ``$CONTAINER_TOOL`` (default docker), checked to exist."""
    tool = os.environ.get("CONTAINER_TOOL") or "docker"
    if shutil.which(tool) is None:
        raise ImageError(
            f"The container tool '{tool}' is not installed or not on PATH. Install Docker "
            "or Finch, or set CONTAINER_TOOL to the one you have (e.g. CONTAINER_TOOL=finch)."
        )
    return tool


def default_tag() -> str:
    """The git commit of the working tree (``-dirty`` with uncommitted changes), else latest."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "latest"
    return out.stdout.strip() or "latest"


def build_command(tool: str, image: str, platform: str = DEFAULT_PLATFORM) -> list[str]:
    """Build the image from the repository root (the build context)."""
    return [tool, "build", "--platform", platform, "-f", DOCKERFILE, "-t", image, "."]


def login_command(tool: str, registry: str) -> list[str]:
    """Log in to a registry with the password on stdin."""
    return [tool, "login", "--username", "AWS", "--password-stdin", registry]


def tag_command(tool: str, source: str, target: str) -> list[str]:
    return [tool, "tag", source, target]


def push_command(tool: str, target: str) -> list[str]:
    return [tool, "push", target]


def run_command(
    tool: str,
    image: str,
    tree: Path,
    job: str,
    overrides: str = "",
    user: str | None = None,
    platform: str = DEFAULT_PLATFORM,
) -> list[str]:
    """Run one job command in the image with ``tree`` mounted as /opt/ml."""
    cmd = [tool, "run", "--rm", "--platform", platform, "-v", f"{Path(tree).resolve()}:/opt/ml"]
    if user:
        cmd += ["--user", user]
    cmd += [image, job]
    if overrides:
        cmd += ["--overrides", overrides]
    return cmd


def run(cmd: Sequence[str], stdin: str | None = None, shown: str | None = None) -> None:
    """Run a tool command from the repository root; a failure is an ``ImageError``."""
    print("+", shown or " ".join(cmd), flush=True)
    try:
        result = subprocess.run(list(cmd), cwd=REPO_ROOT, input=stdin, text=True, check=False)
    except OSError as exc:
        raise ImageError(f"Could not run '{cmd[0]}': {exc}") from exc
    if result.returncode != 0:
        raise ImageError(f"'{shown or ' '.join(cmd)}' failed with exit code {result.returncode}.")


# ------------------------------------------------------------------------------- ECR


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


def ecr_client(cfg: DictConfig) -> Any:
    import boto3

    region = cfg.sagemaker.region or boto3.session.Session().region_name
    if not region:
        raise ImageError("No AWS region: set sagemaker.region=<region> or AWS_REGION.")
    return boto3.client("ecr", region_name=region)


# -------------------------------------------------------------------------- commands


def build(cfg: DictConfig, tag: str, platform: str) -> str:
    """Build ``<ecr_repository>:<tag>``; return the local image name."""
    image = f"{cfg.sagemaker.ecr_repository}:{tag}"
    run(build_command(container_tool(), image, platform))
    print(f"Built {image}", flush=True)
    return image


def push(cfg: DictConfig, tag: str) -> str:
    """Log in to ECR, tag and push the local image; print and return its URI."""
    tool = container_tool()
    from botocore.exceptions import BotoCoreError, ClientError

    repository = cfg.sagemaker.ecr_repository
    try:
        ecr = ecr_client(cfg)
        check_repository(ecr, repository)
        registry, password = registry_credentials(ecr)
    except (BotoCoreError, ClientError) as exc:
        raise ImageError(f"Could not get ECR credentials: {exc}") from exc
    local, uri = f"{repository}:{tag}", f"{registry}/{repository}:{tag}"
    run(login_command(tool, registry), stdin=password)
    run(tag_command(tool, local, uri))
    run(push_command(tool, uri))
    print(f"Pushed {uri}\nSet it in the config: sagemaker.image_uri={uri}", flush=True)
    return uri


def prepare_tree(tree: Path, job: str, overrides: Sequence[str]) -> None:
    """Lay out an /opt/ml tree for ``job``: config channel plus the inputs it reads.

    The inputs (splits, a trained model) are made here with the same steps the
    job runs, so the container run exercises only the one command.
    """
    from conf.channel import write_channel

    processing = tree / "processing" / "input"
    if job == "prepare":
        write_channel(processing / "config", overrides)
        return
    with tempfile.TemporaryDirectory(prefix="run-local-") as tmp:
        _job_inputs(tree, job, overrides, Path(tmp))


def _job_inputs(tree: Path, job: str, overrides: Sequence[str], scratch: Path) -> None:
    from conf.channel import write_channel
    from steps.prepare import prepare

    processing = tree / "processing" / "input"
    if job == "train":
        cfg = write_channel(tree / "input" / "data" / "config", overrides)
        splits = prepare(cfg, scratch / "data")
        for name in ("train", "validation"):
            shutil.copytree(splits[name], tree / "input" / "data" / name)
        params = tree / "input" / "config" / "hyperparameters.json"
        params.parent.mkdir(parents=True)
        params.write_text(json.dumps({"overrides": ""}) + "\n")
        return
    from steps.train import train

    cfg = write_channel(processing / "config", overrides)
    splits = prepare(cfg, scratch / "data")
    train(cfg, splits["train"], splits["validation"], scratch / "model")
    for name in ("test", "validation"):
        shutil.copytree(splits[name], processing / name)
    (processing / "model").mkdir()
    with tarfile.open(processing / "model" / "model.tar.gz", "w:gz") as tar:
        for path in sorted((scratch / "model").iterdir()):
            tar.add(path, arcname=path.name)


def run_local(cfg_overrides: Sequence[str], tag: str, job: str, platform: str) -> int:
    """Run ``job`` in the image against a fresh temporary /opt/ml tree; return its exit code."""
    from conf import merge_overrides

    tool = container_tool()
    overrides = merge_overrides(list(RUN_LOCAL_DEFAULTS), list(cfg_overrides))
    cfg = compose_checked(overrides)
    tree = Path(tempfile.mkdtemp(prefix=f"opt-ml-{job}-"))
    print(f"Preparing {tree} for '{job}'", flush=True)
    prepare_tree(tree, job, overrides)
    user = f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else None
    image = f"{cfg.sagemaker.ecr_repository}:{tag}"
    cmd = run_command(tool, image, tree, job, user=user, platform=platform)
    print("+", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=REPO_ROOT, check=False).returncode
    failure = tree / "output" / "failure"
    if code != 0 and failure.is_file():
        print(f"Job failed (exit {code}): {failure.read_text().strip()}", flush=True)
    outputs = sorted(
        str(p.relative_to(tree))
        for folder in (tree / "model", tree / "processing" / "output")
        for p in folder.rglob("*")
        if p.is_file()
    )
    print("Outputs:\n  " + "\n  ".join(outputs or ["(none)"]), flush=True)
    print(f"The /opt/ml tree is kept at {tree}", flush=True)
    return code


# ------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m container.image", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("build", "push", "run-local"):
        p = sub.add_parser(action)
        p.add_argument("--tag", default=None, help="image tag (default: the git commit)")
        if action != "push":
            p.add_argument("--platform", default=DEFAULT_PLATFORM, help="target platform")
        label = "[JOB] OVERRIDES" if action == "run-local" else "OVERRIDES"
        p.add_argument("rest", nargs="*", metavar=label, help="Hydra overrides")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch one action; a user error is one line on stderr and exit code 2."""
    args = parse_args(argv)
    tag = args.tag or default_tag()
    rest = list(args.rest)
    try:
        if args.action == "run-local":
            job = rest.pop(0) if rest and rest[0] in JOBS else "train"
            return run_local(rest, tag, job, args.platform)
        cfg = compose_checked(rest)
        if args.action == "build":
            build(cfg, tag, args.platform)
        else:
            push(cfg, tag)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
