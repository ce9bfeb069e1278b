"""Setting up the SageMaker SDK for the builder: region, telemetry, quiet logs, one session.

With ``pipelines.sagemaker.builder`` this is the only code that touches the SDK. Call
``sagemaker_env`` before importing the builder: SDK v3 creates a client when it
is imported, so the region must be set first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import boto3
from omegaconf import DictConfig

TELEMETRY_OFF = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def sagemaker_env(region_name: str, *, offline: bool = False) -> None:
    """Prepare the process for importing the SageMaker SDK (region; no role look-ups offline)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", region_name)
    if offline:
        # Role validation calls IAM; an offline definition must make no AWS call.
        os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"


@contextlib.contextmanager
def quiet_sdk() -> Iterator[None]:
    """Keep the SDK's informational logs and warnings out of the command output."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def validate_sdk_config_once() -> None:
    """Validate each distinct SDK defaults config once, not on every look-up.

    The SDK checks its defaults config (and the JSON schema itself) on every
    config look-up, about fifty times per pipeline build at a quarter of a
    second each; the config never changes within a build.
    """
    from sagemaker.core.config.config_manager import SageMakerConfig

    validate = SageMakerConfig.validate_sagemaker_config
    if getattr(validate, "cached", False):
        return
    seen: set[str] = set()

    def validate_once(sagemaker_config: dict | None = None) -> None:
        key = json.dumps(sagemaker_config, sort_keys=True, default=str)
        if key not in seen:
            validate(sagemaker_config)
            seen.add(key)

    validate_once.cached = True  # type: ignore[attr-defined]
    SageMakerConfig.validate_sagemaker_config = staticmethod(validate_once)


def pipeline_session(cfg: DictConfig, boto_session: boto3.Session) -> Any:
    """A PipelineSession with telemetry off and the configured bucket as its default."""
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    validate_sdk_config_once()

    session = PipelineSession(
        boto_session=boto_session,
        default_bucket=cfg.sagemaker.bucket,
        sagemaker_config=TELEMETRY_OFF,
    )
    # The SDK checks (and may create) the default bucket on first use; the bucket is
    # the deployed stack's, so record it as resolved and keep building free of AWS calls.
    session._default_bucket = cfg.sagemaker.bucket
    return session
