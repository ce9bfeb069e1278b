"""A container CLI stand-in for the infra tests: it logs every call and runs jobs on the host.

``write_tool`` installs it as an executable that appends each call (working
directory, the stdin of ``login``, the arguments) to a log. ``info`` succeeds
or fails as told, ``image inspect`` prints the given labels, and ``run`` runs
the project image's entrypoint with this Python on the host: each ``-v
HOST:PATH`` mount becomes a link at PATH under a temporary root, which the job
reads as ``OPT_ML_ROOT``. No isolation and no network rule, but the job code the
image runs; tests/image runs the real image.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# ``run`` flags that take a value.
VALUED = {"--network", "--ulimit", "-v", "--user", "--platform", "--entrypoint", "-e"}


def write_tool(path: Path, log: Path, labels: str = "{}", info_fails: bool = False) -> Path:
    """Install the stand-in at ``path``, logging to ``log``; returns ``path``."""
    env = {"STANDIN_LOG": str(log), "STANDIN_LABELS": labels}
    if info_fails:
        env["STANDIN_INFO_FAILS"] = "1"
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    path.write_text(
        f'#!/bin/sh\n{assignments} exec {shlex.quote(sys.executable)} "{__file__}" "$@"\n'
    )
    path.chmod(0o755)
    return path


def calls(log: Path, skip_info: bool = True) -> list[dict]:
    """The stand-in's invocations: working directory, stdin and arguments."""
    out = []
    for line in log.read_text().split("\n") if log.exists() else []:
        if line:
            cwd, stdin, *args = line.split("\0")[:-1]
            if not (skip_info and args[:1] == ["info"]):
                out.append({"cwd": cwd, "stdin": stdin, "args": args})
    return out


def mounts_of(args: Sequence[str]) -> dict[str, Path]:
    """A logged ``run`` call's mounts: container path -> host folder."""
    pairs = [args[i + 1].split(":", 1) for i, a in enumerate(args) if a == "-v"]
    return {path: Path(host) for host, path in pairs}


def run_on_host(args: Sequence[str]) -> int:
    """``run [flags] IMAGE [ARGS]`` as the image would run it, on this host."""
    from conf.contract import DEFAULT_ROOT, ENTRYPOINT  # here: every other call stays fast

    mounts, entrypoint, i = mounts_of(args), list(ENTRYPOINT), 1
    while args[i].startswith("-"):
        if args[i] == "--entrypoint":
            entrypoint = [args[i + 1]]
        i += 2 if args[i] in VALUED else 1
    command = [*entrypoint, *args[i + 1 :]]
    if command[0] == "python":
        command[0] = sys.executable
    with tempfile.TemporaryDirectory(prefix="standin-opt-ml-") as root:
        for path, host in mounts.items():
            link = Path(root) / Path(path).relative_to(DEFAULT_ROOT)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(host, target_is_directory=True)
        env = {**os.environ, "OPT_ML_ROOT": root}
        return subprocess.run(command, cwd=REPO_ROOT, env=env, check=False).returncode


def main(args: list[str]) -> int:
    """Log the call, then answer it."""
    stdin = sys.stdin.read() if args[:1] == ["login"] else ""
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write("\0".join([os.getcwd(), stdin, *args]) + "\0\n")
    if args[:1] == ["info"] and os.environ.get("STANDIN_INFO_FAILS"):
        print("Cannot connect to the daemon", file=sys.stderr)
        return 1
    if args[:1] == ["image"]:
        print(os.environ["STANDIN_LABELS"])
    if args[:1] == ["run"]:
        return run_on_host(args)
    if args[:1] == ["push"]:
        return push_to_registry(args[1])
    return 0


def push_to_registry(target: str) -> int:
    """Put the image into the (local endpoint's) ECR registry ``target`` names, with the
    manifest type STANDIN_MANIFEST_TYPE (Docker v2 schema 2 unless told otherwise)."""
    import json

    import boto3

    registry, _, rest = target.partition("/")
    repository, _, tag = rest.partition(":")
    media = os.environ.get(
        "STANDIN_MANIFEST_TYPE", "application/vnd.docker.distribution.manifest.v2+json"
    )
    manifest = {"schemaVersion": 2, "mediaType": media, "config": {"digest": "sha256:" + "1" * 64}}
    ecr = boto3.client("ecr", region_name=registry.split(".")[3])
    ecr.put_image(
        repositoryName=repository,
        imageManifest=json.dumps(manifest),
        imageTag=tag,
        imageManifestMediaType=media,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
