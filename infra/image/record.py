"""The record file ``conf/sagemaker/stack.yaml``: account values that composition picks up.

``make infra-config`` writes the deployed stack's outputs there and ``make
push-image`` adds ``sagemaker.image_uri``, the image it pushed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

import conf

RECORD_HEADER = (
    "# @package _global_\n"
    "# Account values: written by `make infra-config` (the deployed stack's outputs)\n"
    "# and `make push-image` (sagemaker.image_uri, the image it pushed). Do not edit.\n"
    "# conf/config.yaml loads this file, when present, after the `sagemaker`,\n"
    "# `pipeline` and `schedule` defaults: experiments and overrides still win.\n"
)


def default_record_path() -> Path:
    """``conf/sagemaker/stack.yaml`` of this project."""
    return Path(conf.CONF_DIR) / "sagemaker" / "stack.yaml"


def read_record(path: Path) -> dict[str, dict[str, Any]]:
    """The values recorded in ``path`` (empty when it does not exist)."""
    if not Path(path).is_file():
        return {}
    data = OmegaConf.to_container(OmegaConf.load(path)) or {}
    if not isinstance(data, dict):
        return {}
    return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)}


def write_record(
    path: Path, values: Mapping[str, Mapping[str, Any]], header: str = RECORD_HEADER
) -> None:
    """Write ``values`` to ``path`` atomically, after ``header`` (``# @package _global_``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = OmegaConf.to_yaml(OmegaConf.create({k: dict(v) for k, v in values.items()}))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + body)
    tmp.replace(path)


def record_image_uri(path: Path, uri: str) -> None:
    """Set ``sagemaker.image_uri`` in the record, keeping every other value."""
    values = read_record(path)
    values.setdefault("sagemaker", {})["image_uri"] = uri
    write_record(path, values)
