"""The ``sagemaker`` section of the composed config: the image's repository and registry.

The image tool composes no config in-process: composing needs the schemas of the
models and data sources, which the units in ``steps`` store and infra never
imports. The local run composes it instead (``python -m pipelines.local.run
--cfg job``) from the tree at ``conf.CONF_DIR``, with the overrides, the stack
record and the experiment that every other entrypoint composes with.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

import conf
from conf.errors import ConfigError
from conf.secrets import check_runtime_overrides
from infra.image.engine import REPO_ROOT

COMPOSER = ("-m", "pipelines.local.run", "--cfg", "job", "--resolve", "--package", "sagemaker")


def composer_command(overrides: Sequence[str]) -> list[str]:
    """The local run printing the resolved ``sagemaker`` section of the project's config tree."""
    return [sys.executable, *COMPOSER, "--config-path", str(conf.CONF_DIR), *overrides]


def sagemaker_config(overrides: Sequence[str]) -> DictConfig:
    """``cfg.sagemaker`` composed with ``overrides``; a bad override is a ``ConfigError``."""
    what = f"Invalid overrides {' '.join(overrides)!r}" if overrides else "Invalid config"
    flags = [item for item in overrides if item.startswith("-")]
    if flags:
        raise ConfigError(f"Unknown option {flags[0]!r}: only Hydra overrides follow the flags.")
    try:
        check_runtime_overrides(overrides)
    except HydraException as err:
        raise ConfigError(f"{what}: {err}") from None
    try:
        done = subprocess.run(
            composer_command(overrides), cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise ConfigError(f"Could not compose the config: {exc}") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise ConfigError(f"{what}: {lines[-1].removeprefix('error: ')}")
    return OmegaConf.create(yaml.safe_load(done.stdout))
