"""``make deploy-model``: serve the latest Approved model package on a SageMaker endpoint.

The package is the newest Approved version in ``sagemaker.model_package_group``.
Its image is started with ``serve`` (the project's model server); ``deploy.*``
chooses a real-time endpoint (instance type and count) or a serverless one
(memory and concurrency). A new endpoint is created; an existing one is updated
to a new endpoint config, which SageMaker rolls out without downtime. Nothing
is approved: a clear refusal, before anything is created.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError, WaiterError
from omegaconf import DictConfig

from conf.errors import ConfigError, UserError, compose_checked, report
from steps import register_schemas

SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
NAME_LIMIT = 63  # model and endpoint config names


@dataclass(frozen=True)
class Outcome:
    """What a deployment did."""

    action: str  # created | updated | unchanged
    endpoint: str
    package_arn: str
    endpoint_config: str


def check(cfg: DictConfig) -> None:
    """Refuse a deployment config that the service would refuse, naming the key."""
    d, problems = cfg.deploy, []
    if d.mode == "realtime" and d.instance_count < 1:
        problems.append(f"deploy.instance_count must be >= 1, not {d.instance_count}")
    if d.mode == "serverless" and d.serverless_memory_mb not in SERVERLESS_MEMORY_MB:
        allowed = ", ".join(map(str, SERVERLESS_MEMORY_MB))
        problems.append(f"deploy.serverless_memory_mb must be one of {allowed}")
    if d.mode == "serverless" and not 1 <= d.serverless_max_concurrency <= 200:
        problems.append("deploy.serverless_max_concurrency must be between 1 and 200")
    if d.model_server_timeout < 1:
        problems.append("deploy.model_server_timeout must be >= 1 second")
    if d.model_server_workers is not None and d.model_server_workers < 1:
        problems.append("deploy.model_server_workers must be >= 1 (or null: one per vCPU)")
    if not cfg.sagemaker.role_arn:
        problems.append("sagemaker.role_arn (the role the endpoint's model runs with)")
    if problems:
        raise ConfigError("Cannot deploy: " + "; ".join(problems) + ".")


def latest_approved(sm: Any, group: str) -> dict[str, Any]:
    """The newest Approved package of ``group`` (highest version), described."""
    approved: list[dict[str, Any]] = []
    total = 0
    try:
        for page in sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
            summaries = page["ModelPackageSummaryList"]
            total += len(summaries)
            approved += [s for s in summaries if s.get("ModelApprovalStatus") == "Approved"]
    except ClientError as exc:
        raise ConfigError(
            f"Cannot list the model package group '{group}': {_reason(exc)}"
        ) from None
    if not approved:
        raise ConfigError(
            f"No Approved model package in group '{group}' ({total} package"
            f"{'' if total == 1 else 's'}, none approved): nothing was deployed. Approve one "
            "in SageMaker Studio (Models > Registered models), or with `aws sagemaker "
            "update-model-package --model-package-arn <arn> --model-approval-status Approved`."
        )
    newest = max(approved, key=lambda s: (s.get("ModelPackageVersion", 0), s["CreationTime"]))
    return sm.describe_model_package(ModelPackageName=newest["ModelPackageArn"])


def environment(cfg: DictConfig) -> dict[str, str]:
    """The model server's settings, as the container's environment."""
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(cfg.deploy.model_server_timeout)}
    if cfg.deploy.model_server_workers is not None:
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(cfg.deploy.model_server_workers)
    return env


def variant(cfg: DictConfig, model_name: str) -> dict[str, Any]:
    """The endpoint config's one production variant."""
    d = cfg.deploy
    out: dict[str, Any] = {"VariantName": d.variant_name, "ModelName": model_name}
    if d.mode == "serverless":
        out["ServerlessConfig"] = {
            "MemorySizeInMB": int(d.serverless_memory_mb),
            "MaxConcurrency": int(d.serverless_max_concurrency),
        }
    else:
        out |= {
            "InstanceType": d.instance_type,
            "InitialInstanceCount": int(d.instance_count),
            "InitialVariantWeight": 1.0,
        }
    return out


def requests(
    cfg: DictConfig, package: dict[str, Any], stamp: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CreateModel and CreateEndpointConfig requests for ``package``."""
    version = package.get("ModelPackageVersion", 0)
    suffix = f"-v{version}-{stamp}"
    name = cfg.deploy.endpoint_name[: NAME_LIMIT - len(suffix)].rstrip("-") + suffix
    tags = [{"Key": k, "Value": str(v)} for k, v in cfg.sagemaker.tags.items()]
    model = {
        "ModelName": name,
        "ExecutionRoleArn": cfg.sagemaker.role_arn,
        # One container: `Containers` declares an inference pipeline, which
        # Serverless Inference does not support (CreateModel reference).
        "PrimaryContainer": {
            "ModelPackageName": package["ModelPackageArn"],
            "Environment": environment(cfg),
        },
        "Tags": tags,
    }
    config: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [variant(cfg, name)],
        "Tags": tags,
    }
    if cfg.deploy.mode == "realtime" and cfg.sagemaker.kms_key_id:
        config["KmsKeyId"] = cfg.sagemaker.kms_key_id
    return model, config


def check_instance_type(cfg: DictConfig, package: dict[str, Any]) -> None:
    """A real-time instance type must be one the package declares."""
    if cfg.deploy.mode != "realtime":
        return
    spec = package.get("InferenceSpecification") or {}
    declared = spec.get("SupportedRealtimeInferenceInstanceTypes") or []
    if declared and cfg.deploy.instance_type not in declared:
        raise ConfigError(
            f"deploy.instance_type={cfg.deploy.instance_type} is not among the instance types "
            f"model package {package['ModelPackageArn']} declares ({', '.join(declared)}). "
            "Choose one of them, or register the model with it in "
            "deploy.inference_instance_types (read at upsert)."
        )


def current(sm: Any, endpoint: str) -> dict[str, Any] | None:
    """The endpoint, its config and model, or None if there is no such endpoint."""
    try:
        described = sm.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        if "Could not find" in str(exc) or _code(exc) == "ResourceNotFound":
            return None
        raise ConfigError(f"Cannot describe endpoint '{endpoint}': {_reason(exc)}") from None
    config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    variants = config.get("ProductionVariants") or [{}]
    model = sm.describe_model(ModelName=variants[0]["ModelName"])
    return {"endpoint": described, "config": config, "model": model}


def same(deployed: dict[str, Any], model: dict[str, Any], config: dict[str, Any]) -> bool:
    """Does the endpoint already serve this package with these settings?"""
    containers = deployed["model"].get("Containers") or [deployed["model"].get("PrimaryContainer")]
    old = containers[0] or {}
    new = model["PrimaryContainer"]
    keys = ("InstanceType", "InitialInstanceCount", "ServerlessConfig", "VariantName")
    old_variant = deployed["config"]["ProductionVariants"][0]
    new_variant = config["ProductionVariants"][0]
    return (
        old.get("ModelPackageName") == new["ModelPackageName"]
        and (old.get("Environment") or {}) == new["Environment"]
        and all(old_variant.get(k) == new_variant.get(k) for k in keys)
    )


def deploy(cfg: DictConfig, sm: Any, now: datetime | None = None) -> Outcome:
    """Create or update ``deploy.endpoint_name`` to serve the latest Approved package."""
    check(cfg)
    endpoint = cfg.deploy.endpoint_name
    package = latest_approved(sm, cfg.sagemaker.model_package_group)
    check_instance_type(cfg, package)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    model, config = requests(cfg, package, stamp)
    deployed = current(sm, endpoint)
    arn = package["ModelPackageArn"]
    if deployed is not None:
        status = deployed["endpoint"].get("EndpointStatus")
        if status in BUSY:
            raise ConfigError(
                f"Endpoint '{endpoint}' is {status}: wait until it is InService, then deploy."
            )
        if status == "Failed":
            raise ConfigError(
                f"Endpoint '{endpoint}' is Failed ({deployed['endpoint'].get('FailureReason')})"
                f" and cannot be updated: delete it (`aws sagemaker delete-endpoint "
                f"--endpoint-name {endpoint}`) and deploy again."
            )
        if same(deployed, model, config):
            name = deployed["endpoint"]["EndpointConfigName"]
            return Outcome("unchanged", endpoint, arn, name)
    try:
        sm.create_model(**model)
        sm.create_endpoint_config(**config)
        if deployed is None:
            sm.create_endpoint(
                EndpointName=endpoint,
                EndpointConfigName=config["EndpointConfigName"],
                Tags=model["Tags"],
            )
        else:
            sm.update_endpoint(
                EndpointName=endpoint,
                EndpointConfigName=config["EndpointConfigName"],
                RetainAllVariantProperties=False,
            )
    except ClientError as exc:
        raise ConfigError(f"Deploying to endpoint '{endpoint}' failed: {_reason(exc)}") from None
    action = "created" if deployed is None else "updated"
    return Outcome(action, endpoint, arn, config["EndpointConfigName"])


def wait(sm: Any, endpoint: str, timeout: float, poll: float = 30.0) -> str:
    """Wait until the endpoint is InService; return its status."""
    attempts = max(1, int(timeout // poll))
    try:
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint, WaiterConfig={"Delay": poll, "MaxAttempts": attempts}
        )
    except WaiterError as exc:
        described = sm.describe_endpoint(EndpointName=endpoint)
        reason = described.get("FailureReason") or str(exc)
        raise ConfigError(
            f"Endpoint '{endpoint}' is {described.get('EndpointStatus')}: {reason}"
        ) from None
    return "InService"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reason(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'Error')}: {error.get('Message', exc)}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make deploy-model ARGS=...", description=__doc__)
    parser.add_argument("--wait", action="store_true", help="wait until the endpoint is InService")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most")
    args, rest = parser.parse_known_args(argv)
    unknown = [item for item in rest if item.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = rest
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    register_schemas()
    try:
        from pipelines.sagemaker import aws, session

        cfg = compose_checked(args.overrides)
        check(cfg)
        boto = aws.check_credentials(session.region(cfg))
        sm = boto.client("sagemaker")
        outcome = deploy(cfg, sm)
        if outcome.action == "unchanged":
            print(
                f"Endpoint {outcome.endpoint} already serves {outcome.package_arn} with these "
                "settings: nothing to do."
            )
            return 0
        print(
            f"Endpoint {outcome.endpoint} {outcome.action}: {outcome.package_arn} "
            f"({cfg.deploy.mode}, endpoint config {outcome.endpoint_config})."
        )
        if args.wait:
            print(f"Waiting for {outcome.endpoint} to be InService ...", flush=True)
            print(f"Endpoint {outcome.endpoint}: {wait(sm, outcome.endpoint, args.timeout)}")
    except UserError as err:
        return report(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
