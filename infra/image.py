"""Build, push and try out the shared job image with podman, Docker or Finch.

    python -m infra.image base      [--name NAME] [--suite SUITE]
    python -m infra.image build     [--base IMAGE] [--ca-bundle FILE] [--platform P] [OVERRIDES...]
    python -m infra.image engine
    python -m infra.image name      [OVERRIDES...]
    python -m infra.image push      [--allow-dirty] [--record FILE] [OVERRIDES...]
    python -m infra.image run-local [--image IMAGE] [prepare|train|evaluate] [OVERRIDES...]

The engine is the first of docker, podman and finch that answers ``<tool> info``
(a CLI without a running daemon does not count); ``$CONTAINER_TOOL`` picks one.
The image is named ``<sagemaker.ecr_repository>:<tag>``, where the tag names the
source it was built from: the git commit, plus ``-dirty-<hash of the changes>``
when the files that go into the image have uncommitted changes. ``push`` pushes
that tag to the ECR registry of ``sagemaker.region`` and records its URI as
``sagemaker.image_uri`` in ``conf/sagemaker/stack.yaml``, where
``make upsert-pipeline`` picks it up. OVERRIDES are Hydra overrides.

This tool runs on the host: it is not part of the image.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from conf.contract import (
    CONFIG_CHANNEL,
    EVALUATION_OUTPUT,
    JOB,
    JOBS,
    MODEL_ARCHIVE,
    MODEL_INPUT,
    OVERRIDES_KEY,
    PREPARE,
    SPLITS,
    TRAIN,
    UNSET,
    OptMl,
)
from conf.errors import UserError, compose_checked, report
from steps import register_schemas

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "container/Dockerfile"
# Everything the image is built from (container/Dockerfile's COPY sources and
# the files that shape the build): a change here changes the image tag.
IMAGE_SOURCES = ("pyproject.toml", "uv.lock", "conf", "steps", "container", ".dockerignore")
DEFAULT_PLATFORM = "linux/amd64"  # SageMaker's ml.m5/ml.c5 instances are x86_64
ENGINES = ("docker", "podman", "finch")
# run-local prepares small synthetic data unless the overrides say otherwise.
RUN_LOCAL_DEFAULTS = ("data.n_rows=20000",)

# The stand-in base image made from Debian packages, and the label that marks it
# and every image built on it (labels are inherited from the base).
STANDIN_NAME = "claim-frequency-base:bookworm"
STANDIN_LABEL = "io.claim-frequency.base"
STANDIN_VALUE = "debian-standin"
STANDIN_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "python-is-python3",
    "ca-certificates",
)
OFFICIAL_BASE_NAMES = ("python", "docker.io/library/python", "library/python")
REVISION_LABEL = "org.opencontainers.image.revision"
BASE_LABEL = "io.claim-frequency.base-image"

# Podman as root gives containers nofile and nproc limits of 2**20; a process that
# may not raise its own limits (some sandboxes) cannot start such a container.
PODMAN_ROOT_RLIMIT = 1_048_576
# ECR: every image a registered model package uses also gets this tag prefix,
# which the repository's lifecycle policy never expires (infra/template.yaml).
REGISTERED_PREFIX = "registered-"


class ImageError(UserError):
    """The container engine or the registry refused, or a value is missing."""


# ------------------------------------------------------------------------ engine


@dataclass(frozen=True)
class Engine:
    """A working container CLI and the flags this host needs with it."""

    tool: str
    name: str
    runtime: str | None = None
    ulimits: tuple[str, ...] = ()

    def cmd(self, *args: str) -> list[str]:
        """``<tool> [--runtime R] args...``."""
        flags = ["--runtime", self.runtime] if self.runtime else []
        return [self.tool, *flags, *args]

    @property
    def limit_flags(self) -> list[str]:
        """``--ulimit`` flags for ``run`` and ``build``, where this host needs them."""
        return [flag for value in self.ulimits for flag in ("--ulimit", value)]


def _probe(cmd: Sequence[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            list(cmd), capture_output=True, text=True, check=False, timeout=60, cwd=REPO_ROOT
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def detect_engine(environ: Mapping[str, str] | None = None) -> Engine:
    """The container engine to use: ``$CONTAINER_TOOL``, else the first that works.

    "Works" means ``<tool> info`` succeeds, so a docker CLI without a daemon is
    passed over.
    """
    environ = os.environ if environ is None else environ
    chosen = environ.get("CONTAINER_TOOL")
    problems = []
    for tool in [chosen] if chosen else ENGINES:
        if shutil.which(tool) is None:
            problems.append(f"'{tool}' is not installed or not on PATH")
            continue
        info = _probe([tool, "info"])
        if info is None or info.returncode != 0:
            detail = (info.stderr or info.stdout).strip().splitlines()[-1:] if info else []
            problems.append(f"'{tool} info' failed" + (f" ({detail[0]})" if detail else ""))
            continue
        return configure(tool)
    hint = (
        "set CONTAINER_TOOL to an engine that works"
        if chosen
        else "install podman (apt-get install podman runc), Docker or Finch, or set CONTAINER_TOOL"
    )
    raise ImageError(f"No working container engine: {'; '.join(problems)}. Start one or {hint}.")


def configure(tool: str) -> Engine:
    """The engine for ``tool`` with the runtime and limits this host needs (podman only)."""
    name = Path(tool).name
    if name != "podman":
        return Engine(tool, name)
    out = _probe([tool, "info", "--format", "{{.Host.OCIRuntime.Name}}"])
    default_runtime = out.stdout.strip() if out and out.returncode == 0 else ""
    runtime = podman_runtime(default_runtime, Path("/sys/fs/cgroup"), shutil.which("runc"))
    return Engine(tool, name, runtime, podman_ulimits())


def podman_runtime(default: str, cgroup_root: Path, runc: str | None) -> str | None:
    """``runc`` where podman's default crun cannot run on a hybrid cgroup host, else None."""
    hybrid = (cgroup_root / "unified").is_dir()
    if default == "crun" and hybrid:
        if runc is None:
            raise ImageError(
                "podman's runtime crun does not support this host's hybrid cgroups: install "
                "runc (apt-get install runc) and try again."
            )
        return "runc"
    return None


def podman_ulimits(
    euid: int | None = None,
    limits: Mapping[str, tuple[int, int]] | None = None,
    pid_max: int | None = None,
) -> tuple[str, ...]:
    """``nofile``/``nproc`` limits where rootful podman's defaults cannot be set.

    Rootful podman asks for 2**20 of each; where this process's hard limit is
    lower (and it may not raise it) the container fails to start, so the
    current hard limits are passed instead. nproc is also capped at the
    kernel's pid_max, which some sandboxes enforce.
    """
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return ()  # rootless podman keeps the caller's limits itself
    if limits is None:
        limits = {
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
            "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
        }
    if pid_max is None:
        try:
            pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        except (OSError, ValueError):
            pid_max = PODMAN_ROOT_RLIMIT
    out = []
    for name, (_, hard) in limits.items():
        if hard == resource.RLIM_INFINITY or hard >= PODMAN_ROOT_RLIMIT:
            continue
        value = min(hard, pid_max) if name == "nproc" else hard
        out.append(f"{name}={value}:{value}")
    return tuple(out)


# ------------------------------------------------------------------------- source tag


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    return out


@dataclass(frozen=True)
class SourceTag:
    """The image tag for the current source, and whether it has uncommitted changes."""

    tag: str
    dirty: bool
    changed: tuple[str, ...] = ()


def source_tag() -> SourceTag:
    """``<commit>``, or ``<commit>-dirty-<hash>`` when the image's sources have changes.

    Only the files the image is built from count (``IMAGE_SOURCES``): the commit
    is the last one that changed them, and an edit to the README, committed or
    not, leaves the tag alone. The hash covers the diff and the untracked
    files, so two different uncommitted states never share a tag.
    """
    try:
        # The last commit that changed the image's sources: a commit elsewhere keeps the tag.
        commit = _git("log", "-1", "--format=%H", "--", *IMAGE_SOURCES).strip()[:12]
        commit = commit or _git("rev-parse", "HEAD").strip()[:12]
        status = _git("status", "--porcelain", "--untracked-files=all", "--", *IMAGE_SOURCES)
        changed = tuple(line[3:] for line in status.splitlines() if line.strip())
        if not changed:
            return SourceTag(commit, False)
        h = hashlib.sha256(_git("diff", "HEAD", "--binary", "--", *IMAGE_SOURCES).encode())
        untracked = _git("ls-files", "--others", "--exclude-standard", "--", *IMAGE_SOURCES)
        for rel in sorted(untracked.splitlines()):
            h.update(rel.encode() + b"\0" + (REPO_ROOT / rel).read_bytes())
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ImageError(
            f"Cannot name the image after its source: git failed ({exc}). Build from a git "
            "checkout of the project."
        ) from None
    return SourceTag(f"{commit}-dirty-{h.hexdigest()[:8]}", True, changed)


# ---------------------------------------------------------------------- command lines


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
    return engine.cmd("tag", source, target)


def push_command(engine: Engine, target: str) -> list[str]:
    return engine.cmd("push", target)


def labels_command(engine: Engine, image: str) -> list[str]:
    return engine.cmd("image", "inspect", "--format", "{{json .Config.Labels}}", image)


def run_command(
    engine: Engine,
    image: str,
    mounts: Sequence[tuple[Path, str]],
    args: Sequence[str],
    entrypoint: Sequence[str] | None = None,
    user: str | None = None,
    platform: str | None = DEFAULT_PLATFORM,
) -> list[str]:
    """Run the image without network, each ``(host folder, container path)`` its own mount.

    ``entrypoint`` replaces the image's, as a processing job's ContainerEntrypoint does.
    """
    cmd = engine.cmd("run", "--rm", "--network", "none", *engine.limit_flags)
    if platform:
        cmd += ["--platform", platform]
    for host, path in mounts:
        cmd += ["-v", f"{Path(host).resolve()}:{path}"]
    if user:
        cmd += ["--user", user]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint[0], image, *entrypoint[1:]]
    else:
        cmd.append(image)
    return [*cmd, *args]


def run(cmd: Sequence[str], stdin: str | None = None, shown: str | None = None) -> None:
    """Run an engine command from the repository root; a failure is an ``ImageError``."""
    print("+", shown or " ".join(cmd), flush=True)
    try:
        result = subprocess.run(list(cmd), cwd=REPO_ROOT, input=stdin, text=True, check=False)
    except OSError as exc:
        raise ImageError(f"Could not run '{cmd[0]}': {exc}") from exc
    if result.returncode != 0:
        raise ImageError(f"'{shown or ' '.join(cmd)}' failed with exit code {result.returncode}.")


def image_labels(engine: Engine, image: str) -> dict[str, str]:
    """The labels of a local image; an ``ImageError`` if there is no such image."""
    out = _probe(labels_command(engine, image))
    if out is None or out.returncode != 0:
        raise ImageError(
            f"No local image '{image}': build it from this source with `make build-image` "
            "(the tag follows the source: commit, or -dirty-<hash> with uncommitted changes)."
        )
    return json.loads(out.stdout or "null") or {}


# --------------------------------------------------------------------------- base


def check_base_name(name: str) -> None:
    """The stand-in base may never carry the official image's name."""
    repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    if repo in OFFICIAL_BASE_NAMES:
        raise ImageError(
            f"'{name}' is the official Python image's name: give the stand-in base a name of "
            f"its own (default {STANDIN_NAME}), so that it is never mistaken for the official one."
        )


def import_command(engine: Engine, name: str) -> list[str]:
    """Import a root file system from stdin as the stand-in base, labelled as such."""
    return engine.cmd(
        "import",
        "--change",
        "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
        "--change",
        f"LABEL {STANDIN_LABEL}={STANDIN_VALUE}",
        "-",
        name,
    )


def build_base(engine: Engine, name: str, suite: str) -> None:
    """Make the stand-in base from Debian packages with debootstrap, and import it."""
    check_base_name(name)
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed: apt-get install debootstrap.")
    if os.geteuid() != 0:
        raise ImageError("debootstrap must run as root: run `make base-image` as root.")
    with tempfile.TemporaryDirectory(prefix="base-image-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(STANDIN_PACKAGES)}",
                suite,
                str(root),
            ]
        )
        # What a slim image leaves out: package caches and lists, docs, man pages, locales.
        for rel in ("var/cache/apt", "var/lib/apt/lists"):
            for child in (root / rel).glob("*"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        for rel in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
            shutil.rmtree(root / rel, ignore_errors=True)
        cmd = import_command(engine, name)
        print(f"+ tar -C {root} -c . | {' '.join(cmd)}", flush=True)
        with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
            imported = subprocess.run(cmd, stdin=tar.stdout, check=False)
            tar.stdout.close()  # type: ignore[union-attr]
        if tar.returncode != 0 or imported.returncode != 0:
            raise ImageError(f"Importing the stand-in base '{name}' failed.")
    print(f'Built the stand-in base {name}: build on it with ARGS="--base {name}"', flush=True)


# ---------------------------------------------------------------------------- ECR


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


def tag_exists(ecr: Any, repository: str, tag: str) -> bool:
    """Whether ``repository:tag`` is in ECR."""
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        return False
    return True


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
        if name != repository_uri or not tag or tag.startswith(REGISTERED_PREFIX):
            continue
        keep = f"{REGISTERED_PREFIX}{tag}"[:128]
        if tag_exists(ecr, repository, keep) or not tag_exists(ecr, repository, tag):
            continue
        image = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}])
        found = image["images"][0]
        media = found.get("imageManifestMediaType")
        ecr.put_image(
            repositoryName=repository,
            imageManifest=found["imageManifest"],
            imageTag=keep,
            **({"imageManifestMediaType": media} if media else {}),
        )
        added.append(keep)
    return added


def aws_session(cfg: DictConfig) -> Any:
    """A session in ``sagemaker.region`` with credentials (the pipelines' one helper)."""
    from pipelines.sagemaker import session

    return session.session(cfg.sagemaker.region)


# ------------------------------------------------------------------------ recording


def default_record_path() -> Path:
    """``conf/sagemaker/stack.yaml``: the account values composition picks up."""
    from conf import CONF_DIR

    return Path(CONF_DIR) / "sagemaker" / "stack.yaml"


RECORD_HEADER = (
    "# @package _global_\n"
    "# Account values: written by `make infra-config` (the deployed stack's outputs)\n"
    "# and `make push-image` (sagemaker.image_uri, the image it pushed). Do not edit.\n"
    "# conf/config.yaml loads this file, when present, after the `sagemaker`,\n"
    "# `pipeline` and `schedule` defaults: experiments and overrides still win.\n"
)


def read_record(path: Path) -> dict[str, dict[str, Any]]:
    """The values recorded in ``path`` (empty when it does not exist)."""
    if not Path(path).is_file():
        return {}
    data = OmegaConf.to_container(OmegaConf.load(path)) or {}
    return {k: dict(v) for k, v in data.items() if isinstance(v, dict)}  # type: ignore[union-attr]


def write_record(path: Path, values: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``values`` to ``path`` atomically, with the header composition expects."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = OmegaConf.to_yaml(OmegaConf.create({k: dict(v) for k, v in values.items()}))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(RECORD_HEADER + body)
    tmp.replace(path)


def record_image_uri(path: Path, uri: str) -> None:
    """Set ``sagemaker.image_uri`` in the record, keeping every other value."""
    values = read_record(path)
    values.setdefault("sagemaker", {})["image_uri"] = uri
    write_record(path, values)


# -------------------------------------------------------------------------- commands


def build(cfg: DictConfig, platform: str, base: str | None, ca_bundle: Path | None) -> str:
    """Build ``<ecr_repository>:<source tag>``; return the local image name."""
    engine = detect_engine()
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise ImageError(f"--ca-bundle {ca_bundle}: no such file.")
    source = source_tag()
    image = f"{cfg.sagemaker.ecr_repository}:{source.tag}"
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
    return image


def is_standin(labels: Mapping[str, str]) -> bool:
    return labels.get(STANDIN_LABEL) == STANDIN_VALUE


def push(cfg: DictConfig, allow_dirty: bool, record: Path) -> str:
    """Push the image built from this source to ECR, record and return its URI."""
    source = source_tag()
    if source.dirty and not allow_dirty:
        shown = ", ".join(source.changed[:5]) + (" ..." if len(source.changed) > 5 else "")
        raise ImageError(
            f"The image's sources have uncommitted changes ({shown}): commit them and "
            f"build again, or push the image {source.tag} anyway with ARGS=--allow-dirty."
        )
    engine = detect_engine()
    repository = cfg.sagemaker.ecr_repository
    local = f"{repository}:{source.tag}"
    if is_standin(image_labels(engine, local)):
        raise ImageError(
            f"{local} was built on the stand-in base made from Debian packages "
            f"(label {STANDIN_LABEL}={STANDIN_VALUE}): it is for tests on this machine only. "
            "Build on the official base (make build-image without --base) and push that."
        )
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        session = aws_session(cfg)
        ecr = session.client("ecr")
        check_repository(ecr, repository)
        registry, password = registry_credentials(ecr)
        uri = f"{registry}/{repository}:{source.tag}"
        protected = protect_registered(
            ecr,
            session.client("sagemaker"),
            uri.rsplit(":", 1)[0],
            cfg.sagemaker.model_package_group,
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
    record_image_uri(record, uri)
    print(f"Pushed {uri}\nRecorded sagemaker.image_uri in {record}: upsert uses it.", flush=True)
    return uri


def job_mounts(tree: Path) -> list[tuple[Path, str]]:
    """Each folder a job declares, its own mount, as SageMaker's local mode does it.

    Processing inputs and outputs, training channels, the hyperparameters
    folder, the model folder and the output (failure) folder.
    """
    local = OptMl(tree)
    folders = [local.processing_input(""), local.processing_outputs, local.channel("")]
    mounts = [
        (p, str(JOB.root / p.relative_to(tree)))
        for folder in folders
        if folder.is_dir()
        for p in sorted(folder.iterdir())
    ]
    singles = (local.hyperparameters.parent, local.model, local.failure.parent)
    mounts += [(f, str(JOB.root / f.relative_to(tree))) for f in singles if f.is_dir()]
    return mounts


def prepare_tree(tree: Path, job: str, overrides: Sequence[str]) -> None:
    """Lay out an /opt/ml tree for ``job``: config channel, inputs and empty output folders.

    The inputs (splits, a trained model) are made here with the same steps the
    job runs, so the container run exercises only the one command.
    """
    from conf.channel import write_channel

    local = OptMl(tree)
    local.failure.parent.mkdir(parents=True, exist_ok=True)
    if job == PREPARE:
        write_channel(local.processing_input(CONFIG_CHANNEL), overrides)
        for split in SPLITS:
            local.processing_output(split).mkdir(parents=True)
        return
    with tempfile.TemporaryDirectory(prefix="run-local-") as tmp:
        _job_inputs(tree, job, overrides, Path(tmp))
    if job == TRAIN:
        local.model.mkdir()
    else:
        local.processing_output(EVALUATION_OUTPUT).mkdir(parents=True)


def _job_inputs(tree: Path, job: str, overrides: Sequence[str], scratch: Path) -> None:
    from conf.channel import write_channel
    from steps.prepare import prepare

    local = OptMl(tree)
    if job == TRAIN:
        cfg = write_channel(local.channel(CONFIG_CHANNEL), overrides)
        splits = prepare(cfg, scratch / "data")
        for name in ("train", "validation"):
            shutil.copytree(splits[name], local.channel(name))
        local.hyperparameters.parent.mkdir(parents=True)
        local.hyperparameters.write_text(json.dumps({OVERRIDES_KEY: UNSET}) + "\n")
        return
    from steps.train import train

    cfg = write_channel(local.processing_input(CONFIG_CHANNEL), overrides)
    splits = prepare(cfg, scratch / "data")
    train(cfg, splits["train"], splits["validation"], scratch / "model")
    for name in ("test", "validation"):
        shutil.copytree(splits[name], local.processing_input(name))
    local.processing_input(MODEL_INPUT).mkdir()
    with tarfile.open(local.processing_input(MODEL_INPUT) / MODEL_ARCHIVE, "w:gz") as tar:
        for path in sorted((scratch / "model").iterdir()):
            tar.add(path, arcname=path.name)


def run_local(
    cfg_overrides: Sequence[str], image: str | None, job: str, platform: str | None
) -> int:
    """Run ``job`` in the image against a fresh temporary /opt/ml tree; return its exit code."""
    from conf import merge_overrides

    engine = detect_engine()
    overrides = merge_overrides(list(RUN_LOCAL_DEFAULTS), list(cfg_overrides))
    cfg = compose_checked(overrides)
    image = image or f"{cfg.sagemaker.ecr_repository}:{source_tag().tag}"
    image_labels(engine, image)  # a clear error if it was never built
    tree = Path(tempfile.mkdtemp(prefix=f"opt-ml-{job}-"))
    print(f"Preparing {tree} for '{job}'", flush=True)
    prepare_tree(tree, job, overrides)
    user = f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else None
    cmd = run_command(engine, image, job_mounts(tree), [job], user=user, platform=platform)
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


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.image", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("base", help="build the stand-in base image from Debian packages")
    p.add_argument("--name", default=STANDIN_NAME, help=f"image name (default {STANDIN_NAME})")
    p.add_argument("--suite", default="bookworm", help="Debian suite (default bookworm)")

    p = sub.add_parser("build", help="build the job image from this source")
    p.add_argument("--base", default=None, help="base image (default: the Dockerfile's)")
    p.add_argument("--ca-bundle", type=Path, default=None, help="CA bundle for a TLS proxy")
    p.add_argument("--platform", default=DEFAULT_PLATFORM, help="target platform")
    p.add_argument("rest", nargs="*", metavar="OVERRIDES", help="Hydra overrides")

    sub.add_parser("engine", help="print the container engine and the flags it gets here")

    p = sub.add_parser("name", help="print the image name for this source")
    p.add_argument("rest", nargs="*", metavar="OVERRIDES", help="Hydra overrides")

    p = sub.add_parser("push", help="push the image built from this source to ECR")
    p.add_argument("--allow-dirty", action="store_true", help="push a -dirty-<hash> image")
    p.add_argument("--record", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("rest", nargs="*", metavar="OVERRIDES", help="Hydra overrides")

    p = sub.add_parser("run-local", help="run one job in the image on a temporary /opt/ml")
    p.add_argument("--image", default=None, help="image (default: built from this source)")
    p.add_argument("--platform", default=DEFAULT_PLATFORM, help="target platform")
    p.add_argument("rest", nargs="*", metavar="[JOB] OVERRIDES", help="job, Hydra overrides")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch one action; a user error is one line on stderr and exit code 2."""
    register_schemas()
    args = parse_args(argv)
    try:
        if args.action == "base":
            build_base(detect_engine(), args.name, args.suite)
            return 0
        if args.action == "engine":
            engine = detect_engine()
            print(" ".join([*engine.cmd(), *engine.limit_flags]))
            return 0
        rest = list(args.rest)
        if args.action == "run-local":
            job = rest.pop(0) if rest and rest[0] in JOBS else TRAIN
            return run_local(rest, args.image, job, args.platform)
        cfg = compose_checked(rest)
        if args.action == "name":
            print(f"{cfg.sagemaker.ecr_repository}:{source_tag().tag}")
        elif args.action == "build":
            build(cfg, args.platform, args.base, args.ca_bundle)
        else:
            push(cfg, args.allow_dirty, args.record or default_record_path())
    except UserError as err:
        return report(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
