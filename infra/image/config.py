"""The ``sagemaker`` section of the composed config: the image's repository and registry.

Composed in-process like every entrypoint does: the image tool's command line
registers the model and data source schemas first (``steps.register_schemas``,
the one import of ``steps`` that infra makes: no step function).
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from conf.errors import ConfigError, compose_checked


def sagemaker_config(overrides: Sequence[str]) -> DictConfig:
    """``cfg.sagemaker`` composed with ``overrides``; a bad override is a ``ConfigError``."""
    flags = [item for item in overrides if item.startswith("-")]
    if flags:
        raise ConfigError(f"Unknown option {flags[0]!r}: only Hydra overrides follow the flags.")
    sagemaker = compose_checked(list(overrides)).sagemaker
    assert isinstance(sagemaker, DictConfig)
    return sagemaker
