"""The image's name: ``<sagemaker.ecr_repository>:<tag>``, the tag naming its source.

The tag is the git commit, plus ``-dirty-<hash of the changes>`` when the files
that go into the image have uncommitted changes.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.image.engine import REPO_ROOT, ImageError

# Everything the image is built from (container/Dockerfile's COPY sources and
# the files that shape the build): a change here changes the image tag.
IMAGE_SOURCES = ("pyproject.toml", "uv.lock", "conf", "steps", "container", ".dockerignore")


@dataclass(frozen=True)
class SourceTag:
    """The image tag for the current source, and whether it has uncommitted changes."""

    tag: str
    dirty: bool
    changed: tuple[str, ...] = ()


def source_tag(root: Path = REPO_ROOT) -> SourceTag:
    """``<commit>``, or ``<commit>-dirty-<hash>`` when the image's sources have changes.

    Only the files the image is built from count (``IMAGE_SOURCES``): the commit
    is the last one that changed them, and an edit to the README, committed or
    not, leaves the tag alone. The hash covers the diff and the untracked
    files, so two different uncommitted states never share a tag.
    """

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return done.stdout

    try:
        # The last commit that changed the image's sources: a commit elsewhere keeps the tag.
        commit = git("log", "-1", "--format=%H", "--", *IMAGE_SOURCES).strip()[:12]
        commit = commit or git("rev-parse", "HEAD").strip()[:12]
        status = git("status", "--porcelain", "--untracked-files=all", "--", *IMAGE_SOURCES)
        changed = tuple(line[3:] for line in status.splitlines() if line.strip())
        if not changed:
            return SourceTag(commit, False)
        h = hashlib.sha256(git("diff", "HEAD", "--binary", "--", *IMAGE_SOURCES).encode())
        untracked = git("ls-files", "--others", "--exclude-standard", "--", *IMAGE_SOURCES)
        for rel in sorted(untracked.splitlines()):
            h.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ImageError(
            f"Cannot name the image after its source: git failed ({exc}). Build from a git "
            "checkout of the project."
        ) from None
    return SourceTag(f"{commit}-dirty-{h.hexdigest()[:8]}", True, changed)


def image_name(repository: str, source: SourceTag) -> str:
    """The local name of the image built from ``source``: ``<repository>:<tag>``."""
    return f"{repository}:{source.tag}"
