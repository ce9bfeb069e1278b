"""The account's instance quotas, checked before a start costs anything.

A new account often has a quota of 0 or 1 for an instance type. A job that
needs more instances than its quota fails with ``ResourceLimitExceeded``,
which no retry can fix. The quota of each (instance type, usage) is read
through the Service Quotas API: the applied value (``ListServiceQuotas``), else
the default (``ListAWSDefaultServiceQuotas``). SageMaker names its quotas
``<instance type> for <usage> usage``, e.g. ``ml.m5.xlarge for training job usage``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from conf.errors import ConfigError
from executor import service_rules

SERVICE_CODE = "sagemaker"
TRAINING, PROCESSING = "training job", "processing job"
SPOT_TRAINING = "spot training job"


@dataclass(frozen=True)
class Need:
    """Instances of one type that one job (or a tuning step's parallel jobs) runs at once."""

    step: str
    instance_type: str
    usage: str
    per_job: int
    parallel_jobs: int = 1

    @property
    def quota_name(self) -> str:
        return quota_name(self.instance_type, self.usage)


def quota_name(instance_type: str, usage: str) -> str:
    """SageMaker's name of the quota on ``instance_type`` for ``usage``."""
    return f"{instance_type} for {usage} usage"


def read(client: Any, names: Iterable[str]) -> dict[str, float] | None:
    """The quota value of each name found: applied values first, then AWS defaults.

    None when the caller may not read quotas (the check is then skipped).
    """
    wanted = set(names)
    found: dict[str, float] = {}
    try:
        for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
            if wanted <= set(found):
                break
            pages = client.get_paginator(operation).paginate(ServiceCode=SERVICE_CODE)
            for page in pages:
                for quota in page.get("Quotas", []):
                    name = quota.get("QuotaName")
                    if name in wanted and name not in found and "Value" in quota:
                        found[name] = float(quota["Value"])
    except (ClientError, BotoCoreError) as err:
        code = err.response.get("Error", {}).get("Code") if isinstance(err, ClientError) else ""
        print(
            f"warning: could not read the account's SageMaker quotas ({code or err}); "
            "going on without checking them.",
            file=sys.stderr,
        )
        return None
    return found


def check(needs: Iterable[Need], quotas: Mapping[str, float]) -> list[str]:
    """Refuse a job that needs more instances than its quota allows; return warnings.

    A quota of 0 refuses every job of that type. When only a tuning step's
    parallel jobs exceed the quota, the jobs queue: that is a warning.
    """
    warnings = []
    for need in needs:
        quota = quotas.get(need.quota_name)
        if quota is None:
            continue
        if need.per_job > quota:
            raise ConfigError(
                f"Step {need.step} needs {need.per_job} {need.instance_type} instance(s) per job, "
                f"but the account's quota '{need.quota_name}' is {quota:g}: request an "
                "increase in Service Quotas, or choose another instance type."
            )
        total = need.per_job * need.parallel_jobs
        if total > quota:
            warnings.append(
                f"Step {need.step} runs {need.parallel_jobs} jobs at a time on "
                f"{need.instance_type} ({total} instances) but the quota '{need.quota_name}' is "
                f"{quota:g}: the jobs will queue."
            )
    return warnings


def needs(definition: Mapping[str, Any], values: Mapping[str, Any]) -> list[Need]:
    """What each job step of ``definition`` needs, resolved with the start ``values``."""
    declared = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}
    effective = {**declared, **values}
    out = []
    for step in service_rules.job_steps(definition):
        request = service_rules.resolve(step.get("Arguments", {}), effective)
        name, kind = str(step.get("Name")), step.get("Type")
        if kind == "Processing":
            cluster = request.get("ProcessingResources", {}).get("ClusterConfig", {})
            out += _need(name, cluster, PROCESSING)
        elif kind == "Training":
            usage = SPOT_TRAINING if request.get("EnableManagedSpotTraining") else TRAINING
            out += _need(name, request.get("ResourceConfig", {}), usage)
        elif kind == "Tuning":
            job = request.get("TrainingJobDefinition", {})
            usage = SPOT_TRAINING if job.get("EnableManagedSpotTraining") else TRAINING
            limits = request.get("HyperParameterTuningJobConfig", {}).get("ResourceLimits", {})
            parallel = int(limits.get("MaxParallelTrainingJobs") or 1)
            out += _need(name, job.get("ResourceConfig", {}), usage, parallel)
    return out


def _need(step: str, resources: Mapping[str, Any], usage: str, parallel: int = 1) -> list[Need]:
    instance_type = resources.get("InstanceType")
    if not isinstance(instance_type, str):
        return []
    count = int(resources.get("InstanceCount") or 1)
    return [Need(step, instance_type, usage, count, parallel)]


def check_definition(client: Any, definition: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """The start-time quota check of ``make start-pipeline`` and ``make schedule-pipeline``."""
    wanted = needs(definition, values)
    quotas = read(client, {need.quota_name for need in wanted})
    if quotas is None:
        return
    for warning in check(wanted, quotas):
        print(f"warning: {warning}", file=sys.stderr)


# ------------------------------------------------------- cloud runs: jobs at a time

WARM_POOL = "training warm pool"


def training_quota(request: Mapping[str, Any]) -> str:
    """The quota a CreateTrainingJob request's instances count against."""
    usage = SPOT_TRAINING if request.get("EnableManagedSpotTraining") else TRAINING
    return quota_name(str(request["ResourceConfig"]["InstanceType"]), usage)


def cloud_run_caps(
    client: Any, requests: Sequence[Mapping[str, Any]], max_parallel: int, *, detach: bool = False
) -> dict[str, int]:
    """How many of a sweep's training jobs may run at once, per quota below ``max_parallel``.

    A quota of 0 refuses the sweep, as does a warm pool quota of 0 for jobs that ask
    for a warm pool (``KeepAlivePeriodInSeconds``; a new account has 0). A quota
    below ``max_parallel`` caps the jobs on it, with one warning line (``detach``,
    which starts every job at once, is refused instead). Unreadable quotas: a
    warning, and no cap.
    """
    counts: dict[str, int] = {}
    per_job: dict[str, int] = {}
    warm: dict[str, str] = {}
    for request in requests:
        name, resources = training_quota(request), request["ResourceConfig"]
        counts[name] = counts.get(name, 0) + 1
        per_job[name] = int(resources.get("InstanceCount") or 1)
        if int(resources.get("KeepAlivePeriodInSeconds") or 0) > 0:
            warm[quota_name(str(resources["InstanceType"]), WARM_POOL)] = name
    quotas = read(client, {*counts, *warm})
    if quotas is None:
        return {}
    for name in counts:
        if name in quotas and quotas[name] < per_job[name]:
            raise ConfigError(
                f"The account's quota '{name}' is {quotas[name]:g}: no such training job can "
                "start. Request an increase in Service Quotas (Amazon SageMaker), or choose "
                "another sagemaker.training_instance_type."
            )
    for name in warm:
        if quotas.get(name) == 0:
            raise ConfigError(
                f"sagemaker.keep_alive_seconds asks for a warm pool, but the account's quota "
                f"'{name}' is 0 (a new account's default): request an increase in Service "
                "Quotas (Amazon SageMaker), or set sagemaker.keep_alive_seconds=0."
            )
    caps = {}
    for name, count in counts.items():
        if name not in quotas:
            continue
        cap = int(quotas[name] // per_job[name])
        if cap >= min(count, max(1, max_parallel)):
            continue
        if detach:
            raise ConfigError(
                f"--detach starts every job at once, but the account's quota '{name}' lets "
                f"{cap} of its {count} jobs run at a time: follow the sweep (no --detach) so "
                "that jobs start as others end, or request an increase in Service Quotas."
            )
        caps[name] = cap
        print(
            f"warning: the account's quota '{name}' is {quotas[name]:g}: {cap} of its {count} "
            f"jobs run at a time (not hydra.launcher.max_parallel_jobs={max_parallel}); the "
            "others wait for a free slot.",
            file=sys.stderr,
            flush=True,
        )
    return caps
