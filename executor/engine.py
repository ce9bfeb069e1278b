"""One pipeline execution: the step graph scheduled as the service schedules it.

A step starts when every step it depends on (``DependsOn`` and the steps its
expressions read) has succeeded; steps whose inputs are ready run at the same
time (jobs take one core each). Steps of a condition step's unchosen branch,
and steps after a failed step, never start. Job requests are resolved, checked
by ``rules`` and only then run.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import cache, definition, dispatch, properties, retry, rules
from executor.errors import (
    ExecutorError,
    JobInternalError,
    RequestRefused,
    ServiceFault,
    StepFailed,
    StepStopped,
    Throttled,
)
from executor.expressions import Context, condition, resolve, text
from executor.jobs import ACCOUNT, Runner, cut, now
from executor.record import Record
from executor.storage import Store

# Where a job's request names its image.
IMAGE_FIELDS = {
    "Processing": ("AppSpecification", "ImageUri"),
    "Training": ("AlgorithmSpecification", "TrainingImage"),
    "Tuning": ("TrainingJobDefinition", "AlgorithmSpecification", "TrainingImage"),
}
# Error codes of a throttled AWS call (botocore's retry handlers use the same ones).
THROTTLING_CODES = (
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
)
METADATA_KEYS = {
    "Processing": ("ProcessingJob", "ProcessingJobArn"),
    "Training": ("TrainingJob", "TrainingJobArn"),
    "Tuning": ("TuningJob", "HyperParameterTuningJobArn"),
    "RegisterModel": ("RegisterModel", "ModelPackageArn"),
}


def new_execution_id() -> str:
    """A 12-character id like the service's."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


def _name_part(text_: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", text_)).strip("-") or "step"


@dataclass
class Registry:
    """Where model registration goes: a record in the execution folder, or CreateModelPackage."""

    folder: Path
    client: Any = None  # a boto3 SageMaker client in aws mode

    def register(self, request: dict[str, Any], region: str) -> dict[str, Any]:
        """Register a model package; the step's properties (DescribeModelPackage's fields)."""
        if self.client is not None:
            return properties.describe("RegisterModel", _plain(self._call(request)))
        group = request.get("ModelPackageGroupName", "default")
        self.folder.mkdir(parents=True, exist_ok=True)
        version = len(list(self.folder.glob(f"{group}-*.json"))) + 1
        arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:model-package/{group.lower()}/{version}"
        payload = {"ModelPackageArn": arn, "CreateModelPackage": request}
        (self.folder / f"{group}-{version}.json").write_text(json.dumps(payload, indent=2))
        created = now()
        described = {
            **request,
            "ModelPackageName": group,
            "ModelPackageGroupName": group,
            "ModelPackageVersion": version,
            "ModelPackageArn": arn,
            "CreationTime": created,
            "LastModifiedTime": created,
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
        }
        return properties.describe("RegisterModel", described)

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        """CreateModelPackage, then DescribeModelPackage; throttling and server errors are
        raised as the retry policy exception types they are (``executor.retry``)."""
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

        try:
            arn = self.client.create_model_package(**request)["ModelPackageArn"]
            return self.client.describe_model_package(ModelPackageName=arn)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if error.get("Code") in THROTTLING_CODES:
                raise Throttled(f"CreateModelPackage was throttled: {exc}") from exc
            if status >= 500:
                raise ServiceFault(f"CreateModelPackage failed on the service: {exc}") from exc
            raise
        except (ConnectionError, HTTPClientError) as exc:
            raise ServiceFault(f"CreateModelPackage could not reach the service: {exc}") from exc


def _plain(value: Any) -> Any:
    """A boto3 response as JSON values (datetimes as ISO 8601 text)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def runs_as(engine: str | None, image: Any) -> str:
    """How a job runs here: ``process`` (the local command mapped to its image), or
    ``image <name:tag>`` in a container engine."""
    if engine is None:
        return "process"
    return f"image {str(image).rsplit('/', 1)[-1]}"


class Execution:
    """Runs one execution of ``pipeline_definition`` and keeps its record."""

    def __init__(
        self,
        pipeline_definition: str | dict[str, Any],
        params: dict[str, str],
        runner: Runner,
        folder: Path,
        *,
        pipeline_name: str,
        execution_id: str,
        store: Store,
        registry: Registry,
        cache_root: Path | None = None,
        on_change: Callable[[Record], None] | None = None,
        retry_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.definition = definition.load(pipeline_definition)
        self.graph = definition.steps(self.definition)
        self.parameters = definition.parameters(self.definition, params)
        self.runner, self.store, self.registry = runner, store, registry
        self.folder, self.cache_root = Path(folder), cache_root
        self.pipeline_name, self.execution_id = pipeline_name, execution_id
        region = runner.region
        self.arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:pipeline/{pipeline_name.lower()}"
        self.execution_arn = f"{self.arn}/execution/{execution_id}"
        start = datetime.now(UTC)
        self.ctx = Context(
            parameters=self.parameters,
            execution={
                "PipelineExecutionId": execution_id,
                "PipelineExecutionArn": self.execution_arn,
                "PipelineName": pipeline_name,
                "PipelineArn": self.arn,
                "StartDateTime": start.isoformat(),
                "CurrentDateTime": start.isoformat(),
            },
            read_property_file=self._read_property_file,
        )
        self.retry_emulation = retry.emulation(calls_services=registry.client is not None)
        self.on_change = on_change or (lambda record: None)
        self.retry_wait = retry_wait or self._interruptible_sleep
        self.status: dict[str, str] = {name: "Pending" for name in self.graph}
        self.outcomes: dict[str, str] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.record = Record(
            self.folder,
            {
                "PipelineArn": self.arn,
                "PipelineExecutionArn": self.execution_arn,
                "PipelineExecutionDisplayName": execution_id,
                "PipelineParameters": [
                    {"Name": k, "Value": text(v)} for k, v in self.parameters.items()
                ],
            },
        )
        self.record.data["Local"].update(
            {
                "Isolation": runner.isolation,
                "Container": runner.engine.tool if runner.engine else "local process",
                "Definition": str(self.folder / "definition.json"),
                "RetryExceptionTypes": self.retry_emulation,
            }
        )
        (self.folder / "definition.json").write_text(json.dumps(self.definition, indent=2))

    # ------------------------------------------------------------------ scheduling

    def run(self) -> str:
        """Run every step that can run; return the execution status."""
        self.on_change(self.record)
        futures: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(self.graph))) as pool:
            while True:
                self._mark_unreachable()
                stopping = self.runner.stop.is_set()
                failed = any(s in ("Failed", "Stopped") for s in self.status.values())
                if not stopping and not failed:
                    for name in self._ready():
                        self.status[name] = "Executing"
                        futures[pool.submit(self._execute, name)] = name
                if not futures:
                    break
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    futures.pop(future)
                    future.result()
        statuses = set(self.status.values())
        if "Failed" in statuses:
            result = "Failed"
        elif "Stopped" in statuses or self.runner.stop.is_set():
            result = "Stopped"
        else:
            result = "Succeeded"
        reasons = [
            f"Step {s['StepName']} failed: {s['FailureReason']}"
            for s in self.record.steps()
            if s.get("FailureReason")
        ]
        self.record.finish(result, cut("; ".join(reasons)) if result == "Failed" else "")
        self.on_change(self.record)
        return result

    def stop(self) -> None:
        """Stop running jobs; running steps end as Stopped and nothing new starts."""
        self.runner.stop_all()

    def _ready(self) -> list[str]:
        out = []
        for name, step in self.graph.items():
            if self.status[name] != "Pending":
                continue
            if not all(self.status[d] == "Succeeded" for d in step.depends_on):
                continue
            if step.branch and self.outcomes.get(step.branch[0]) != step.branch[1]:
                continue
            out.append(name)
        return out

    def _mark_unreachable(self) -> None:
        """Steps after a failed, stopped or unchosen step never run (the service omits them)."""
        changed = True
        while changed:
            changed = False
            for name, step in self.graph.items():
                if self.status[name] != "Pending":
                    continue
                blocked = any(
                    self.status[d] in ("Failed", "Stopped", "NotRun") for d in step.depends_on
                )
                if step.branch and step.branch[0] in self.outcomes:
                    blocked |= self.outcomes[step.branch[0]] != step.branch[1]
                if blocked:
                    self.status[name] = "NotRun"
                    changed = True

    # -------------------------------------------------------------------- one step

    def _execute(self, name: str) -> None:
        step = self.graph[name]
        self.record.start(name, step.type)
        self.on_change(self.record)
        local: dict[str, Any] = {}
        try:
            fields = self._dispatch(step, local)
            status = "Succeeded"
        except StepStopped as exc:
            status, fields = "Stopped", {"FailureReason": cut(str(exc))}
        except (StepFailed, RequestRefused, ExecutorError) as exc:
            status, fields = "Failed", {"FailureReason": cut(str(exc))}
        except Exception as exc:  # an executor defect must still end the step
            status = "Failed"
            fields = {"FailureReason": cut(f"Executor error ({type(exc).__name__}: {exc}).")}
        self.status[name] = status
        self.record.update(name, local, StepStatus=status, **fields)
        self.on_change(self.record)

    def _dispatch(self, step: definition.Step, local: dict[str, Any]) -> dict[str, Any]:
        args = step.arguments
        if step.type == "Condition":
            outcome = all(condition(c, self.ctx) for c in args.get("Conditions", []))
            self.outcomes[step.name] = "If" if outcome else "Else"
            self.ctx.properties[step.name] = {"Outcome": str(outcome)}
            return {"Metadata": {"Condition": {"Outcome": str(outcome)}}}
        if step.type == "Fail":
            message = text(resolve(args.get("ErrorMessage", ""), self.ctx))
            self.record.update(step.name, Metadata={"Fail": {"ErrorMessage": message}})
            raise StepFailed(message)
        request = resolve(copy.deepcopy(args), self.ctx)
        local["Request"] = request
        if step.type == "RegisterModel":
            rules.check("RegisterModel", request)
            described = self._with_retries(
                step, local, lambda: self.registry.register(request, self.runner.region)
            )
            local["Properties"] = described
            self.ctx.properties[step.name] = described
            return {"Metadata": {"RegisterModel": {"Arn": described["ModelPackageArn"]}}}
        job_name = self._job_name(step)
        request[rules.JOB_NAME_FIELDS[step.type]] = job_name
        rules.check(step.type, request)
        cache_cfg = step.raw.get("CacheConfig") or {}
        if cache_cfg.get("Enabled") and self.cache_root is not None:
            key = cache.key(self.pipeline_name, step.name, step.type, request)
            local["CacheKey"] = key
            hit = cache.lookup(
                self.cache_root,
                key,
                cache.expire_after(cache_cfg.get("ExpireAfter", "")),
                datetime.now(UTC),
            )
            if hit:
                source, earlier = hit
                local.update(
                    {"CacheSource": source, "Properties": earlier["Properties"], "Log": None}
                )
                self.ctx.properties[step.name] = earlier["Properties"]
                kind, arn_key = METADATA_KEYS[step.type]
                return {
                    "CacheHitResult": {"SourcePipelineExecutionArn": source},
                    "Metadata": {kind: {"Arn": earlier["Properties"].get(arn_key)}},
                }
        engine = self.runner.engine.tool if self.runner.engine else None
        image: Any = request
        for key in IMAGE_FIELDS[step.type]:
            image = image.get(key) if isinstance(image, dict) else None
        local["RunsAs"] = runs_as(engine, image)
        self.record.update(step.name, local)
        self.on_change(self.record)
        props = self._with_retries(
            step, local, lambda: dispatch.run_request(self.runner, step.type, job_name, request)
        )
        details = props.pop("_local", {})
        local.update({"Log": details.get("log"), "LostFiles": details.get("lost"), **details})
        local.pop("log", None)
        local.pop("lost", None)
        local["Properties"] = props
        self.ctx.properties[step.name] = props
        kind, arn_key = METADATA_KEYS[step.type]
        fields = {"Metadata": {kind: {"Arn": props.get(arn_key)}}}
        if props[dispatch.STATUS_FIELDS[step.type]] != dispatch.COMPLETED:
            self.record.update(step.name, local, **fields)
            raise StepFailed(props.get("FailureReason", "The job failed."))
        return fields

    def _with_retries(
        self, step: definition.Step, local: dict[str, Any], attempt: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """``attempt()``, retried as the step's RetryPolicies say (``executor.retry``).

        A failure is retried when its exception type (a local equivalent of the service's)
        is named by a policy, the step type retries it, and the policy's MaxAttempts or
        ExpireAfterMin allows one more; each policy counts its own retries.
        """
        policies = step.retry_policies
        named = {t for p in policies for t in p.types}
        emulated = self.retry_emulation["Emulated"]
        unmatched = sorted(t for t in named if t not in emulated)
        if unmatched:
            local["RetryTypesWithoutLocalEquivalent"] = unmatched
        ignored = sorted(named - set(retry.retried_types(step.type)))
        if ignored:  # a tuning job retries its training jobs itself
            local["RetryTypesTheStepTypeDoesNotRetry"] = ignored
        started = time.monotonic()
        retries: dict[int, int] = {}
        count = 0
        while True:
            count += 1
            try:
                return attempt()
            except StepFailed as exc:
                kind = retry.exception_type(exc)
                if kind is None or kind not in retry.retried_types(step.type):
                    raise
                index = next((i for i, p in enumerate(policies) if kind in p.types), None)
                if index is None or self.runner.stop.is_set():
                    raise
                policy = policies[index]
                retries[index] = retries.get(index, 0) + 1
                if not policy.allows(retries[index], time.monotonic() - started):
                    raise
                delay = policy.delay(retries[index])
                local.setdefault("Retries", []).append(
                    {"ExceptionType": kind, "Reason": str(exc), "WaitSeconds": delay}
                )
                self.record.update(step.name, local, AttemptCount=count + 1)
                self.retry_wait(delay)

    def _interruptible_sleep(self, seconds: float) -> None:
        self.runner.stop.wait(seconds)
        if self.runner.stop.is_set():
            raise StepStopped("Stopped while waiting to retry.")

    def _job_name(self, step: definition.Step) -> str:
        suffix = secrets.token_hex(4)
        if step.type == "Tuning":
            # Tuning job names hold at most 32 characters.
            head = _name_part(f"{self.execution_id[:8]}-{step.name}")[:23].strip("-")
            return f"{head}-{suffix}"
        head = _name_part(f"pipelines-{self.execution_id}-{step.name}")[:54].strip("-")
        return f"{head}-{suffix}"

    def _read_property_file(self, step_name: str, file_name: str) -> Any:
        """A step's property file: its declared output's S3 object at FilePath, as JSON."""
        if not step_name:  # JsonGet on an S3 URI
            return json.loads(self.store.read(file_name))
        raw = self.graph[step_name].raw
        files = {f["PropertyFileName"]: f for f in raw.get("PropertyFiles", [])}
        if file_name not in files:
            raise StepFailed(f"Step {step_name} declares no property file {file_name!r}.")
        spec = files[file_name]
        outputs = self.ctx.properties[step_name]["ProcessingOutputConfig"]["Outputs"]
        uri = next(
            (o["S3Output"]["S3Uri"] for o in outputs if o["OutputName"] == spec["OutputName"]),
            None,
        )
        if uri is None:
            raise StepFailed(f"Property file {file_name}: no output named {spec['OutputName']}.")
        target = f"{uri.rstrip('/')}/{spec['FilePath']}"
        try:
            return json.loads(self.store.read(target))
        except (ValueError, JobInternalError) as exc:
            raise StepFailed(
                f"Property file {file_name} at {target} cannot be read: {exc}"
            ) from exc
