"""AWS-side operations of the pipeline commands: checks, upload, upsert, start, schedule.

Everything here takes a composed config and uses boto3 only (the SageMaker SDK
is the builder's: ``pipelines.sagemaker.builder`` and ``pipelines.sagemaker.sdk``). Checks run
before any AWS call, so a missing region, credential, role or bucket ends with
one message naming what to set.
"""

from __future__ import annotations

import difflib
import json
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError
from omegaconf import DictConfig

from conf.channel import digest, write_channel
from conf.errors import ConfigError
from pipelines.sagemaker import ecr, quotas
from pipelines.sagemaker.s3 import download_prefix, upload_folder
from pipelines.sagemaker.session import account_problems, session

TERMINAL = {"Succeeded", "Failed", "Stopped"}


# ----------------------------------------------------------------------------- checks


def check_config(cfg: DictConfig) -> None:
    """Fail, naming the config key, when a value the pipeline needs is missing or malformed."""
    problems = account_problems(cfg)
    if cfg.pipeline.mode not in ("train", "tune"):
        problems.append(f"pipeline.mode must be train or tune, not {cfg.pipeline.mode!r}")
    if problems:
        raise ConfigError(
            "The pipeline cannot be built: set "
            + "; ".join(problems)
            + ". Pass them as overrides (e.g. sagemaker.role_arn=arn:aws:iam::123456789012:role/x) "
            "or write them with `make infra-config`."
        )


def check_tunable(cfg: DictConfig) -> None:
    """A tuning pipeline needs a search space: the selected model must have one."""
    if cfg.pipeline.mode == "tune" and not cfg.tuning.parameters:
        raise ConfigError(
            f"pipeline=tune needs parameters to tune, but model '{cfg.model.name}' has none "
            f"(tuning.parameters is empty). Use pipeline=train with model={cfg.model.name}, or "
            "tune a model with a search space (e.g. model=hgb_poisson)."
        )


def check_credentials(region_name: str) -> boto3.Session:
    """A boto3 session with credentials in ``region_name``, or a message naming what to set."""
    return session(region_name)


# ------------------------------------------------------------------------ config channel


def channel_uri(cfg: DictConfig, folder: Path) -> str:
    """The content-addressed S3 prefix of a written channel folder."""
    from pipelines.sagemaker.builder import config_prefix

    return f"{config_prefix(cfg)}/{digest(folder)}/"


def write_config_channel(cfg: DictConfig, overrides: list[str], folder: Path) -> str:
    """Write the channel for ``overrides`` into ``folder``; return its S3 URI."""
    write_channel(folder, overrides)
    return channel_uri(cfg, folder)


def download_channel(s3: Any, uri: str, folder: Path) -> int:
    """Download the config channel at ``uri`` into ``folder``; a clear error if it is gone."""
    try:
        count = download_prefix(s3, uri, folder)
    except ClientError as err:
        raise ConfigError(f"Cannot read the pipeline's config channel at {uri}: {err}") from None
    if not count:
        raise ConfigError(
            f"The pipeline's config channel at {uri} is empty or gone: run "
            "`make upsert-pipeline` again (with the same overrides) to upload it."
        )
    return count


def upload_channel(s3: Any, folder: Path, uri: str) -> int:
    """Upload the channel folder under ``uri`` (content-addressed: existing keys are equal)."""
    return upload_folder(s3, folder, uri)


# ------------------------------------------------------------------------------ upsert


def definition_text(definition: str) -> str:
    """The definition JSON in a stable, readable layout (for files and diffs)."""
    return json.dumps(json.loads(definition), indent=2, sort_keys=True) + "\n"


def definition_diff(old: str | None, new: str) -> str:
    """A unified diff of two definitions, or ``no changes``."""
    if old is None:
        return "new pipeline"
    a, b = definition_text(old), definition_text(new)
    if a == b:
        return "no changes"
    return "".join(
        difflib.unified_diff(
            a.splitlines(keepends=True), b.splitlines(keepends=True), "deployed", "new", n=2
        )
    )


def describe_pipeline(sm_client: Any, name: str) -> dict[str, Any] | None:
    """DescribePipeline, or None when there is no pipeline of that name."""
    try:
        return sm_client.describe_pipeline(PipelineName=name)
    except ClientError as err:
        error = err.response.get("Error", {})
        missing = error.get("Code") == "ResourceNotFound" or (
            error.get("Code") == "ValidationException"
            and "not find" in error.get("Message", "").lower()
        )
        if missing:
            return None
        raise


def upsert(cfg: DictConfig, sm_client: Any, definition: str) -> tuple[str, str]:
    """Create or update the pipeline; return its ARN and the diff against the deployed one."""
    name = cfg.pipeline.name
    described = describe_pipeline(sm_client, name)
    deployed = described["PipelineDefinition"] if described else None
    common = {
        "PipelineName": name,
        "PipelineDefinition": definition,
        "RoleArn": cfg.sagemaker.role_arn,
        "PipelineDescription": f"Claim frequency ({cfg.pipeline.mode}), from the project's config",
    }
    if deployed is None:
        from pipelines.sagemaker.builder import tags

        arn = sm_client.create_pipeline(**common, Tags=tags(cfg))["PipelineArn"]
    else:
        arn = sm_client.update_pipeline(**common)["PipelineArn"]
    return arn, definition_diff(deployed, definition)


# ------------------------------------------------------------------------------- start


def parse_params(items: Iterable[str]) -> dict[str, str]:
    """``Name=Value`` strings into a dict; a malformed item is a clear error."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {item!r}: write it as Name=Value.")
        out[name.strip()] = value
    return out


def checked_params(
    cfg: DictConfig,
    session: boto3.Session,
    params: dict[str, str],
    *,
    allow_any_input: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The deployed pipeline and ``params`` as checked by ``preflight.check_start``.

    The override string is composed against the config channel the pipeline was
    upserted with (downloaded from S3), so a bad key fails here, not in a job.
    """
    from pipelines.sagemaker import preflight

    described = pipeline(cfg, session.client("sagemaker"))
    definition = json.loads(described["PipelineDefinition"])
    image = ecr.pipeline_image(definition)
    if image:
        ecr.check_exists(session.client("ecr"), image)
    uri = preflight.config_channel_uri(definition)
    with temporary_folder() as tmp:
        download_channel(session.client("s3"), uri, Path(tmp))
        values = preflight.check_start(
            definition, params, Path(tmp), allow_any_input=allow_any_input
        )
    quotas.check_definition(session.client("service-quotas"), definition, values)
    return described, values


def start(cfg: DictConfig, sm_client: Any, params: dict[str, str]) -> str:
    """Start an execution with ``params`` (already checked by ``checked_params``)."""
    response = sm_client.start_pipeline_execution(
        PipelineName=cfg.pipeline.name,
        PipelineParameters=[{"Name": k, "Value": v} for k, v in params.items()],
        PipelineExecutionDescription="Started from the command line",
    )
    return response["PipelineExecutionArn"]


def wait(
    sm_client: Any,
    execution_arn: str,
    *,
    poll_seconds: float = 30.0,
    timeout_seconds: float = 6 * 3600,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll the execution and print step status changes until it ends or the timeout passes."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout_seconds
    while True:
        steps = sm_client.list_pipeline_execution_steps(
            PipelineExecutionArn=execution_arn, SortOrder="Ascending"
        ).get("PipelineExecutionSteps", [])
        for step in steps:
            name, status = step["StepName"], step.get("StepStatus", "?")
            if seen.get(name) != status:
                seen[name] = status
                reason = step.get("FailureReason")
                echo(f"  {name}: {status}" + (f" ({reason})" if reason else ""))
        status = sm_client.describe_pipeline_execution(PipelineExecutionArn=execution_arn)[
            "PipelineExecutionStatus"
        ]
        if status in TERMINAL:
            echo(f"Execution {status}: {execution_arn}")
            return status
        if time.monotonic() >= deadline:
            echo(f"Still {status} after {timeout_seconds:.0f} s; stopped waiting: {execution_arn}")
            return status
        sleep(poll_seconds)


# ---------------------------------------------------------------------------- schedule


def schedule_target(
    cfg: DictConfig, pipeline_arn: str, params: dict[str, str] | None = None
) -> dict[str, Any]:
    """The EventBridge Scheduler target: start the pipeline with the production parameters.

    ``params`` are the checked values (``checked_params``); default: ``schedule.parameters``.
    """
    if params is None:
        params = {str(k): str(v) for k, v in cfg.schedule.parameters.items()}
    return {
        "Arn": pipeline_arn,
        "RoleArn": cfg.schedule.role_arn,
        "SageMakerPipelineParameters": {
            "PipelineParameterList": [{"Name": k, "Value": v} for k, v in params.items()]
        },
        "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
    }


def put_schedule(
    cfg: DictConfig, scheduler: Any, pipeline_arn: str, params: dict[str, str] | None = None
) -> str:
    """Create or update the schedule; return ``created`` or ``updated``."""
    sc = cfg.schedule
    request = {
        "Name": sc.name,
        "ScheduleExpression": sc.expression,
        "ScheduleExpressionTimezone": sc.timezone,
        "State": "ENABLED" if sc.enabled else "DISABLED",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": schedule_target(cfg, pipeline_arn, params),
        "Description": f"Retrain pipeline {cfg.pipeline.name}",
    }
    try:
        scheduler.get_schedule(Name=sc.name)
    except scheduler.exceptions.ResourceNotFoundException:
        scheduler.create_schedule(**request)
        return "created"
    scheduler.update_schedule(**request)
    return "updated"


def remove_schedule(cfg: DictConfig, scheduler: Any) -> bool:
    """Delete the schedule; False when there was none."""
    try:
        scheduler.delete_schedule(Name=cfg.schedule.name)
    except scheduler.exceptions.ResourceNotFoundException:
        return False
    return True


def pipeline(cfg: DictConfig, sm_client: Any) -> dict[str, Any]:
    """The deployed pipeline (DescribePipeline), or a message to upsert it first."""
    described = describe_pipeline(sm_client, cfg.pipeline.name)
    if described is None:
        raise ConfigError(
            f"Pipeline {cfg.pipeline.name!r} does not exist: run `make upsert-pipeline` first "
            "(with the same overrides), or set pipeline.name."
        )
    return described


def temporary_folder() -> tempfile.TemporaryDirectory:
    """A scratch folder for the channel (removed after the command)."""
    return tempfile.TemporaryDirectory(prefix="config-channel-")
