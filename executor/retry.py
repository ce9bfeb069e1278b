"""A step's RetryPolicies, as the developer guide's "Retry Policy for Pipeline Steps" has them.

* Retry policies apply to Processing, Training, Tuning, CreateModel,
  RegisterModel, Transform (AutoML, NotebookJob) steps; not to Condition or Fail steps.
* ExceptionType: ``Step.SERVICE_FAULT`` and ``Step.THROTTLING`` (the SDK's
  StepRetryPolicy), ``SageMaker.JOB_INTERNAL_ERROR``, ``SageMaker.CAPACITY_ERROR``
  and ``SageMaker.RESOURCE_LIMIT`` (SageMakerJobStepRetryPolicy). The SDK refuses
  a SageMakerJobStepRetryPolicy on a create or register model step
  (``sagemaker.mlops.workflow.model_step``): the SageMaker types apply to job steps.
* IntervalSeconds (default 1, at most 43200), BackoffRate (default 2.0);
  MaxAttempts, retries after the first attempt (default 5 when neither is given,
  at most 20, 0: never retried) or ExpireAfterMin (minutes since the step started,
  at most 14400, 0: never retried); "If both properties are identified within one
  policy, then the retry policy will generate a validation error."
* A tuning job "conducts retries internally": ``SageMaker.JOB_INTERNAL_ERROR`` is
  not retried on a tuning step, even if a policy names it.

Which failures happen here: ``LOCAL_EQUIVALENTS`` (``SageMaker.CAPACITY_ERROR``
and ``SageMaker.RESOURCE_LIMIT`` have none: there are no instances or quotas here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from executor.errors import DefinitionError, JobInternalError, ServiceFault, StepFailed, Throttled

STEP_TYPES = ("Step.SERVICE_FAULT", "Step.THROTTLING")
JOB_TYPES = ("SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT")
RETRYABLE_STEPS = ("Processing", "Training", "Tuning", "RegisterModel")
JOB_STEPS = ("Processing", "Training", "Tuning")
INTERVAL_DEFAULT, INTERVAL_MAX = 1, 43200
BACKOFF_DEFAULT = 2.0
ATTEMPTS_DEFAULT, ATTEMPTS_MAX = 5, 20
EXPIRE_MAX = 14400
# Exception type -> the local failure it stands for.
LOCAL_EQUIVALENTS = {
    "SageMaker.JOB_INTERNAL_ERROR": (
        "a platform-side failure of a job: staging its inputs, mounting its folders, "
        "starting its process or container, uploading its outputs"
    ),
    "Step.SERVICE_FAULT": (
        "a server error or unreachable endpoint of a call the step makes itself "
        "(CreateModelPackage with the aws store)"
    ),
    "Step.THROTTLING": "a throttling error of a call the step makes itself",
}
_FAILURES: tuple[tuple[type[StepFailed], str], ...] = (
    (JobInternalError, "SageMaker.JOB_INTERNAL_ERROR"),
    (ServiceFault, "Step.SERVICE_FAULT"),
    (Throttled, "Step.THROTTLING"),
)


@dataclass(frozen=True)
class Policy:
    """One checked retry policy, with the service's defaults filled in."""

    types: tuple[str, ...]
    interval: float
    backoff: float
    max_attempts: int | None
    expire_minutes: int | None

    def delay(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1, 2, ...)."""
        return self.interval * self.backoff ** (retry - 1)

    def allows(self, retry: int, elapsed_seconds: float) -> bool:
        """Whether retry number ``retry`` may start ``elapsed_seconds`` after the step began."""
        if self.expire_minutes is not None:
            return elapsed_seconds < self.expire_minutes * 60
        return retry <= (self.max_attempts or 0)


def policies(step: str, step_type: str, raw: Any) -> list[Policy]:
    """The step's RetryPolicies, checked; a ``DefinitionError`` names the step and the rule."""
    if raw is None:
        return []
    where = f"Step {step!r} ({step_type})"
    if step_type not in RETRYABLE_STEPS:
        raise DefinitionError(
            f"{where} has RetryPolicies; the service takes them only on "
            f"{', '.join(RETRYABLE_STEPS)} steps (Retry Policy for Pipeline Steps)."
        )
    if not isinstance(raw, list):
        raise DefinitionError(f"{where}: RetryPolicies must be a list.")
    return [_policy(f"{where} RetryPolicies[{i}]", step_type, p) for i, p in enumerate(raw)]


def _policy(where: str, step_type: str, raw: Any) -> Policy:
    if not isinstance(raw, dict):
        raise DefinitionError(f"{where} is not an object.")
    unknown = sorted(set(raw) - {"ExceptionType", *_NUMBERS})
    if unknown:
        raise DefinitionError(f"{where}: unknown field(s) {', '.join(unknown)}.")
    types = raw.get("ExceptionType")
    if not isinstance(types, list) or not types:
        raise DefinitionError(f"{where}: ExceptionType must be a non-empty list.")
    for kind in types:
        if kind not in STEP_TYPES + JOB_TYPES:
            known = ", ".join(STEP_TYPES + JOB_TYPES)
            raise DefinitionError(f"{where}: ExceptionType {kind!r} is not one of {known}.")
        if kind in JOB_TYPES and step_type not in JOB_STEPS:
            raise DefinitionError(
                f"{where}: {kind} applies to job steps ({', '.join(JOB_STEPS)}); a "
                f"{step_type} step takes only {' and '.join(STEP_TYPES)} (StepRetryPolicy)."
            )
    values = {name: _number(where, name, raw.get(name)) for name in _NUMBERS}
    if values["MaxAttempts"] is not None and values["ExpireAfterMin"] is not None:
        raise DefinitionError(
            f"{where} gives both MaxAttempts and ExpireAfterMin; the service takes only one."
        )
    attempts, expire = values["MaxAttempts"], values["ExpireAfterMin"]
    if attempts is None and expire is None:
        attempts = ATTEMPTS_DEFAULT
    interval = values["IntervalSeconds"]
    backoff = values["BackoffRate"]
    return Policy(
        types=tuple(types),
        interval=float(INTERVAL_DEFAULT if interval is None else interval),
        backoff=float(BACKOFF_DEFAULT if backoff is None else backoff),
        max_attempts=None if attempts is None else int(attempts),
        expire_minutes=None if expire is None else int(expire),
    )


# Field -> (integer only, maximum).
_NUMBERS: dict[str, tuple[bool, float | None]] = {
    "IntervalSeconds": (True, INTERVAL_MAX),
    "BackoffRate": (False, None),
    "MaxAttempts": (True, ATTEMPTS_MAX),
    "ExpireAfterMin": (True, EXPIRE_MAX),
}


def _number(where: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    integer, maximum = _NUMBERS[name]
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < 0 or (integer and float(value) != int(value)):
        kind = "a non-negative integer" if integer else "a non-negative number"
        raise DefinitionError(f"{where}: {name}={value!r} must be {kind}.")
    if maximum is not None and value > maximum:
        raise DefinitionError(f"{where}: {name}={value!r} is over its maximum of {maximum:g}.")
    return float(value)


def emulation(calls_services: bool) -> dict[str, Any]:
    """Which exception types have a local equivalent in an execution (for its record).

    ``calls_services``: the steps call SageMaker themselves (the aws store's registry);
    otherwise only a job's platform-side failure happens here.
    """
    emulated = {
        kind: what
        for kind, what in LOCAL_EQUIVALENTS.items()
        if calls_services or kind.startswith("SageMaker.")
    }
    return {
        "Emulated": emulated,
        "WithoutLocalEquivalent": [t for t in STEP_TYPES + JOB_TYPES if t not in emulated],
    }


def exception_type(error: BaseException) -> str | None:
    """The retry policy exception type a local failure stands for, if any."""
    for cls, kind in _FAILURES:
        if isinstance(error, cls):
            return kind
    return None


def retried_types(step_type: str) -> tuple[str, ...]:
    """The exception types a step of ``step_type`` retries (a tuning job retries its own jobs)."""
    if step_type == "Tuning":
        return tuple(t for t in STEP_TYPES + JOB_TYPES if t != "SageMaker.JOB_INTERNAL_ERROR")
    return STEP_TYPES + JOB_TYPES
