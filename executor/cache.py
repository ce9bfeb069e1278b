"""Step caching: the service's cache key fields, and look-up in earlier local executions.

The key of a step is its pipeline, name and type plus the request fields the
SageMaker developer guide lists for its type ("Default cache key attributes by
pipeline step type", under "Caching pipeline steps"): a processing step's
AppSpecification, Environment and ProcessingInputs; a training step's
AlgorithmSpecification, CheckpointConfig, DebugHookConfig, DebugRuleConfigurations,
Environment, HyperParameters and InputDataConfig; a tuning step's
HyperParameterTuningJobConfig and, of each training job definition, only
AlgorithmSpecification, HyperParameterRanges, InputDataConfig, StaticHyperParameters
and TuningObjective ("not all of which cause the step to rerun": an
OutputDataConfig holding the execution id does not). The content of S3 objects is
not part of it. A hit is a successful earlier execution's step with the same key
that ended within ``ExpireAfter``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from executor.errors import DefinitionError

KEY_FIELDS = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": (
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    ),
    "Tuning": ("HyperParameterTuningJobConfig", "TrainingJobDefinition", "TrainingJobDefinitions"),
}
# The children of a tuning step's TrainingJobDefinition(s) that are part of the key.
TRAINING_DEFINITION_FIELDS = (
    "AlgorithmSpecification",
    "HyperParameterRanges",
    "InputDataConfig",
    "StaticHyperParameters",
    "TuningObjective",
)
_DURATION = re.compile(
    r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?"
)


def expire_after(text: str) -> timedelta:
    """An ISO 8601 duration (``P30D``, ``PT1H``); a month counts 30 days, a year 365.

    As the developer guide ("Turn on step caching") and the SDK document it, the
    letters may be lower case and the leading ``P`` may be left out: ``30d``, ``5y``,
    ``T16m`` (16 minutes), ``30dT5h``.
    """
    duration = (text or "").strip().upper()
    duration = duration if duration.startswith("P") else f"P{duration}"
    match = _DURATION.fullmatch(duration)
    if not match or duration in ("P", "PT") or duration.endswith("T"):
        raise DefinitionError(f"CacheConfig ExpireAfter {text!r} is not an ISO 8601 duration.")
    y, mo, w, d, h, mi, s = (int(g or 0) for g in match.groups())
    return timedelta(days=365 * y + 30 * mo + 7 * w + d, hours=h, minutes=mi, seconds=s)


def key_fields(step_type: str, request: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resolved request that make a step's cache key."""
    fields = {f: request.get(f) for f in KEY_FIELDS[step_type]}
    if step_type == "Tuning":

        def documented(definition: Any) -> Any:
            if not isinstance(definition, dict):
                return definition
            return {f: definition.get(f) for f in TRAINING_DEFINITION_FIELDS}

        fields["TrainingJobDefinition"] = documented(fields["TrainingJobDefinition"])
        fields["TrainingJobDefinitions"] = [
            documented(d) for d in fields["TrainingJobDefinitions"] or []
        ] or None
    return fields


def key(pipeline: str, step: str, step_type: str, request: dict[str, Any]) -> str:
    """The cache key of a step whose resolved request is ``request``."""
    fields = key_fields(step_type, request)
    payload = json.dumps([pipeline, step, step_type, fields], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def lookup(
    root: Path, cache_key: str, max_age: timedelta, now: datetime
) -> tuple[str, dict[str, Any]] | None:
    """The newest earlier execution's successful step with ``cache_key``, within ``max_age``.

    Returns (source execution ARN, the step's local record) or None.
    """
    best: tuple[datetime, str, dict[str, Any]] | None = None
    for path in Path(root).glob("*/execution.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for step in record.get("Local", {}).get("Steps", {}).values():
            if step.get("CacheKey") != cache_key or step.get("StepStatus") != "Succeeded":
                continue
            ended = datetime.fromisoformat(step["EndTime"])
            if now - ended > max_age:
                continue
            source = step.get("CacheSource") or record["PipelineExecutionArn"]
            if best is None or ended > best[0]:
                best = (ended, source, step)
    return (best[1], best[2]) if best else None
