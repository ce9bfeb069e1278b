"""The stand-in base image, made from Debian packages where no registry is reachable.

It never takes the official Python image's name, and it carries a label that
every image built on it inherits and that ``push`` refuses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from infra.image.engine import Engine, ImageError, run

STANDIN_NAME = "claim-frequency-base:bookworm"
STANDIN_SUITE = "bookworm"
# The label that marks the stand-in and every image built on it (labels are inherited).
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


def is_standin(labels: Mapping[str, str]) -> bool:
    """Whether an image with these labels was built on the stand-in base."""
    return labels.get(STANDIN_LABEL) == STANDIN_VALUE


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
        packages = ",".join(STANDIN_PACKAGES)
        run(["debootstrap", "--variant=minbase", f"--include={packages}", suite, str(root)])
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
