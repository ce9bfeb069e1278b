"""The config channel: one folder that carries a composed config to every SageMaker job.

Layout (uploaded under a content-addressed S3 key, mounted as a job input)::

    version          the channel format version (CHANNEL_VERSION) it was written in
    conf/            the config tree the config was composed from
    overrides.yaml   the Hydra overrides given at upsert
    config.yaml      the composed, resolved config (for people and audits)

A job composes ``conf/`` with the upsert overrides and then its runtime
overrides, so precedence is one rule everywhere: packaged defaults, then the
uploaded config, then runtime overrides (group switches included).

A job composes the channel's tree with the schema inside its image, so a
channel is readable only by an image of the same format version: raise
``CHANNEL_VERSION`` whenever a schema change (renamed schema nodes, a default
moved, a key dropped) would break composing a channel written before it.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from conf import CONF_DIR, compose, merge_overrides, to_yaml
from conf.contract import CONFIG_FILE
from conf.secrets import check_runtime_overrides

TREE = "conf"
OVERRIDES_FILE = "overrides.yaml"
VERSION_FILE = "version"
# 1: no version file (schema nodes named `<option>_schema`, defaults in the dataclasses).
# 2: schema nodes under `schema/`, defaults in the YAML only, enums for choices.
CHANNEL_VERSION = 3


class ChannelVersionError(ValueError):
    """The channel was written in a format version this code cannot read."""


def write_channel(folder: Path, overrides: Sequence[str]) -> DictConfig:
    """Compose the packaged tree with ``overrides`` and write the channel folder."""
    cfg = compose(overrides)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        CONF_DIR,
        folder / TREE,
        ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.pyc"),
        dirs_exist_ok=False,
    )
    (folder / VERSION_FILE).write_text(f"{CHANNEL_VERSION}\n")
    OmegaConf.save(OmegaConf.create(list(overrides)), folder / OVERRIDES_FILE)
    (folder / CONFIG_FILE).write_text(to_yaml(cfg))
    return cfg


def digest(folder: Path) -> str:
    """SHA-256 over the channel's file names and contents (its content address)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def parse_overrides(text: str) -> list[str]:
    """Split a Studio-style override string (``model=glm_poisson model.alpha=0.01``)."""
    return shlex.split(text or "")


def compose_from_channel(folder: Path | None, runtime: Sequence[str] = ()) -> DictConfig:
    """Compose a job's config: channel tree + upsert overrides, then ``runtime`` overrides.

    Without a channel folder the packaged tree is used with ``runtime`` alone. Runtime
    overrides may not read the environment or files (``conf.secrets``).
    """
    check_runtime_overrides(runtime, "the job's runtime overrides")
    if folder is None:
        return compose(list(runtime))
    folder = Path(folder)
    check_version(folder)
    base = [str(o) for o in OmegaConf.load(folder / OVERRIDES_FILE)]
    return compose(merge_overrides(base, runtime), config_dir=folder / TREE)


def channel_version(folder: Path) -> int:
    """The format version a channel was written in (1: written before channels had one)."""
    path = Path(folder) / VERSION_FILE
    if not path.is_file():
        return 1
    text = path.read_text().strip()
    if not text.isdigit():
        raise ChannelVersionError(
            f"The config channel's {VERSION_FILE} file holds {text!r}, not a version number: "
            "upsert the pipeline again (make upsert-pipeline) to upload a new channel."
        )
    return int(text)


def check_version(folder: Path) -> None:
    """Fail with what to do when this code cannot read the channel's format."""
    version = channel_version(folder)
    if version < CHANNEL_VERSION:
        raise ChannelVersionError(
            f"The config channel was written in format version {version}, and this image reads "
            f"version {CHANNEL_VERSION}: the deployed pipeline is older than its image. Upsert "
            "the pipeline again (make upsert-pipeline, with the overrides you deployed it with) "
            "to upload a channel this image can read."
        )
    if version > CHANNEL_VERSION:
        raise ChannelVersionError(
            f"The config channel was written in format version {version}, newer than the "
            f"version {CHANNEL_VERSION} this image reads: build and push the image from the "
            "same commit (make push-image), set sagemaker.image_uri, and upsert the pipeline again."
        )
