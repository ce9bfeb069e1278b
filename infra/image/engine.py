"""The container engine: which CLI works here, the flags this host needs, running it.

The engine is the first of docker, podman and finch that answers ``<tool> info``
(a CLI without a running daemon does not count); ``$CONTAINER_TOOL`` picks one.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conf.errors import UserError

# The build context and the working directory of every engine command.
REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINES = ("docker", "podman", "finch")
DEFAULT_PLATFORM = "linux/amd64"  # SageMaker's ml.m5/ml.c5 instances are x86_64
# Podman as root gives containers nofile and nproc limits of 2**20; a process that
# may not raise its own limits (some sandboxes) cannot start such a container.
PODMAN_ROOT_RLIMIT = 1_048_576


class ImageError(UserError):
    """The container engine or the registry refused, or a value is missing."""


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


def probe(cmd: Sequence[str]) -> subprocess.CompletedProcess[str] | None:
    """Run ``cmd`` quietly from the repository root; None if it cannot run or hangs."""
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
        info = probe([tool, "info"])
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
    out = probe([tool, "info", "--format", "{{.Host.OCIRuntime.Name}}"])
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


def run(cmd: Sequence[str], stdin: str | None = None, shown: str | None = None) -> None:
    """Run an engine command from the repository root; a failure is an ``ImageError``."""
    print("+", shown or " ".join(cmd), flush=True)
    try:
        result = subprocess.run(list(cmd), cwd=REPO_ROOT, input=stdin, text=True, check=False)
    except OSError as exc:
        raise ImageError(f"Could not run '{cmd[0]}': {exc}") from exc
    if result.returncode != 0:
        raise ImageError(f"'{shown or ' '.join(cmd)}' failed with exit code {result.returncode}.")


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


def labels_command(engine: Engine, image: str) -> list[str]:
    """Print a local image's labels as JSON."""
    return engine.cmd("image", "inspect", "--format", "{{json .Config.Labels}}", image)


def image_labels(engine: Engine, image: str) -> dict[str, str]:
    """The labels of a local image; an ``ImageError`` if there is no such image."""
    out = probe(labels_command(engine, image))
    if out is None or out.returncode != 0:
        raise ImageError(
            f"No local image '{image}': build it from this source with `make build-image` "
            "(the tag follows the source: commit, or -dirty-<hash> with uncommitted changes)."
        )
    return json.loads(out.stdout or "null") or {}
