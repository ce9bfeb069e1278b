"""How a job's image runs here: as a local process (an explicit image -> command map) or in a
container engine with the job's tree mounted at /opt/ml.

The one thing a definition cannot say is what an image runs when it gives no
ContainerEntrypoint (a training image's ENTRYPOINT). ``LocalImages`` holds that
as data; a ContainerEntrypoint in the definition overrides it, as on the service.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from executor.errors import ExecutorError, RequestRefused

OPT_ML = "/opt/ml"
ENGINES = ("docker", "podman", "finch")
PYTHON_NAMES = ("python", "python3")


@dataclass(frozen=True)
class LocalImage:
    """An image as a local process: its ENTRYPOINT as a command, and environment to add."""

    entrypoint: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    # Where a relative program path and `python -m` resolve (the image's WORKDIR).
    workdir: Path | None = None


@dataclass
class LocalImages:
    """Image URI -> ``LocalImage``; ``python`` in an entrypoint means ``interpreter``."""

    images: dict[str, LocalImage]
    interpreter: str = sys.executable

    def get(self, image_uri: str) -> LocalImage:
        if image_uri not in self.images:
            known = ", ".join(sorted(self.images)) or "none"
            raise RequestRefused(
                f"Image {image_uri!r} has no local command (mapped images: {known}). Run with "
                "--container docker|podman|finch to run the image itself."
            )
        return self.images[image_uri]

    def command(
        self, image_uri: str, entrypoint: list[str] | None, arguments: list[str]
    ) -> tuple[list[str], dict[str, str], Path | None]:
        """The command line, extra environment and working folder of one job."""
        image = self.get(image_uri)
        command = list(entrypoint) if entrypoint else list(image.entrypoint)
        if command and command[0] in PYTHON_NAMES:
            command[0] = self.interpreter
        return [*command, *arguments], dict(image.env), image.workdir


@dataclass(frozen=True)
class ContainerEngine:
    """Runs a job in an image with ``docker|podman|finch run``."""

    tool: str
    # Extra flags for ``run`` (e.g. podman's ``--runtime runc``).
    run_flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tool not in ENGINES:
            raise ExecutorError(f"--container {self.tool!r}: choose one of {', '.join(ENGINES)}.")

    def command(
        self,
        name: str,
        image_uri: str,
        tree: Path,
        mounts: list[str],
        entrypoint: list[str] | None,
        arguments: list[str],
        env: dict[str, str],
    ) -> list[str]:
        """``<tool> run`` with the tree at /opt/ml and each declared folder as its own mount.

        ``mounts`` are paths under /opt/ml (``/opt/ml/processing/input/config``...): each
        is bound separately, so a rename across them fails as in SageMaker's local mode.
        The host network lets the job reach the local store's S3 endpoint on 127.0.0.1;
        a host file the environment names (the S3 client's config) is mounted read-only
        at the same path. Host paths are made absolute, as engines require.
        """
        tree = Path(tree).resolve()
        cmd = [self.tool, "run", "--rm", "--name", name, "--network", "host", *self.run_flags]
        cmd += ["-v", f"{tree}:{OPT_ML}"]
        for mount in mounts:
            local = tree / Path(mount).relative_to(OPT_ML)
            cmd += ["-v", f"{local}:{mount}"]
        for key, value in sorted(env.items()):
            if value.startswith("/") and value != os.devnull and Path(value).is_file():
                cmd += ["-v", f"{value}:{value}:ro"]
            cmd += ["-e", f"{key}={value}"]
        if entrypoint:
            cmd += ["--entrypoint", entrypoint[0], image_uri, *entrypoint[1:], *arguments]
        else:
            cmd += [image_uri, *arguments]
        return cmd

    def stop_command(self, name: str) -> list[str]:
        return [self.tool, "kill", name]
