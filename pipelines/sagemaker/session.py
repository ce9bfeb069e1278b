"""The one AWS session helper of every command: a region and credentials, or a message.

boto3 only and light: the pipeline commands, the image tools and the infra CLI use it.
"""

from __future__ import annotations

import os

import boto3
from botocore.exceptions import ProfileNotFound
from omegaconf import DictConfig

from conf.errors import ConfigError

CREDENTIALS_HELP = (
    "Set AWS_PROFILE to a configured profile (run `aws configure` or `aws sso login`), "
    "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
)
REGION_HELP = (
    "Set sagemaker.region=<region> (e.g. eu-west-1), or the environment variable AWS_REGION, "
    "or a region in the profile named by AWS_PROFILE."
)


def session(region_name: str | None = None, profile: str | None = None) -> boto3.Session:
    """The one boto3 session helper of every command: a region and credentials, or a message.

    The region is ``region_name``, else AWS_REGION / AWS_DEFAULT_REGION / the profile's.
    """
    try:
        probe = boto3.Session(profile_name=profile)
    except ProfileNotFound as exc:
        raise ConfigError(f"{exc}. {CREDENTIALS_HELP}") from None
    name = resolve_region(region_name, probe)
    if probe.get_credentials() is None:
        raise ConfigError(f"No AWS credentials found. {CREDENTIALS_HELP}")
    return boto3.Session(profile_name=profile, region_name=name)


def region(cfg: DictConfig) -> str:
    """The AWS region: ``sagemaker.region``, else AWS_REGION / AWS_DEFAULT_REGION / the profile."""
    return resolve_region(cfg.sagemaker.region, boto3.Session())


def resolve_region(explicit: str | None, probe: boto3.Session) -> str:
    """``explicit``, else AWS_REGION / AWS_DEFAULT_REGION / the profile's; or a message."""
    name = explicit or os.environ.get("AWS_REGION") or probe.region_name
    if not name:
        raise ConfigError(f"No AWS region is set. {REGION_HELP}")
    return str(name)


def account_problems(cfg: DictConfig) -> list[str]:
    """The account values a job in SageMaker needs, each named when missing or malformed."""
    sm = cfg.sagemaker
    problems = []
    if not sm.role_arn:
        problems.append("sagemaker.role_arn (the SageMaker execution role ARN)")
    elif not (str(sm.role_arn).startswith("arn:") and ":iam::" in str(sm.role_arn)):
        problems.append(f"sagemaker.role_arn must be an IAM role ARN, not {sm.role_arn!r}")
    if not sm.bucket:
        problems.append("sagemaker.bucket (the S3 bucket for data, models and config)")
    if not sm.image_uri:
        problems.append("sagemaker.image_uri (the project's image in ECR, see `make push-image`)")
    return problems
