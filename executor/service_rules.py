"""Rules the SageMaker service applies to a pipeline's requests that botocore's model does not.

botocore validates shapes (types, lengths, patterns) from the service model;
the service refuses more. Where sources disagree, the stricter limit applies:

* ContainerEntrypoint and ContainerArguments items of a processing job may not
  be empty ("Found null or empty string in ContainerArguments"; see
  sagemaker-python-sdk issues #3564 and #3758); each is at most 256 characters
  (CreateProcessingJob API reference, AppSpecification).
* A training job's hyperparameter keys and values: botocore's model allows
  2500 characters for a value, the CreateTrainingJob API reference says each
  key and value is "limited to 256 characters": 256. The same limit is taken
  for a tuning job's static hyperparameters. The service drops a hyperparameter
  whose value is empty (sagemaker-python-sdk #582).
* A pipeline parameter value given at StartPipelineExecution may not be empty
  and is at most 1024 characters (Parameter.Value in the API reference).
* Names (pipeline 82 characters; processing and training job 63; tuning job 32)
  are in botocore's model, which the local executor enforces.

``resolve`` substitutes parameter values into a definition's expressions so the
checks see each value as the service would; step properties not known before
the execution runs become a placeholder.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

CONTAINER_ITEM_MAX = 256
HYPERPARAMETER_MAX = 256
PARAMETER_VALUE_MAX = 1024
# An execution ID as the service makes them (12 lower-case letters and digits).
EXECUTION_ID_PLACEHOLDER = "a1b2c3d4e5f6"


class Unresolved(str):
    """A value known only while the execution runs (a step property)."""


def resolve(value: Any, params: Mapping[str, Any]) -> Any:
    """``value`` with ``Get Parameters.*``, execution variables and ``Std:Join`` substituted."""
    if isinstance(value, list):
        return [resolve(v, params) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and "Get" in value:
        ref = str(value["Get"])
        if ref.startswith("Parameters."):
            return params[ref.removeprefix("Parameters.")]
        if ref == "Execution.PipelineExecutionId":
            return EXECUTION_ID_PLACEHOLDER
        return Unresolved(f"<{ref}>")
    if len(value) == 1 and "Std:Join" in value:
        spec = value["Std:Join"]
        parts = [resolve(v, params) for v in spec["Values"]]
        joined = str(spec["On"]).join(_text(p) for p in parts)
        return Unresolved(joined) if any(isinstance(p, Unresolved) for p in parts) else joined
    if len(value) == 1 and "Std:JsonGet" in value:
        return Unresolved("<Std:JsonGet>")
    return {k: resolve(v, params) for k, v in value.items()}


def job_steps(definition: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every step of a definition, those inside condition steps included."""
    pending = list(definition.get("Steps", []))
    while pending:
        step = pending.pop(0)
        yield step
        if step.get("Type") == "Condition":
            args = step.get("Arguments", {})
            pending.extend(args.get("IfSteps", []) + args.get("ElseSteps", []))


def request_problems(step_type: str, request: Mapping[str, Any]) -> list[str]:
    """What the service would refuse in a resolved job request, each naming field and rule."""
    problems: list[str] = []
    if step_type == "Processing":
        app = request.get("AppSpecification", {})
        for field in ("ContainerEntrypoint", "ContainerArguments"):
            problems += container_item_problems(f"AppSpecification.{field}", app.get(field))
    elif step_type == "Training":
        problems += hyperparameter_problems("HyperParameters", request.get("HyperParameters"))
    elif step_type == "Tuning":
        definitions = [request.get("TrainingJobDefinition")]
        definitions += list(request.get("TrainingJobDefinitions") or [])
        for i, job in enumerate(d for d in definitions if d):
            field = "TrainingJobDefinition" if i == 0 else f"TrainingJobDefinitions[{i - 1}]"
            problems += hyperparameter_problems(
                f"{field}.StaticHyperParameters", job.get("StaticHyperParameters")
            )
    return problems


def container_item_problems(field: str, items: Any) -> list[str]:
    """Empty or over-long ContainerEntrypoint / ContainerArguments items."""
    problems = []
    for i, item in enumerate(items or []):
        where = f"{field}[{i}]"
        if isinstance(item, Unresolved):
            continue
        if not str(item).strip():
            problems.append(
                f"{where} is empty; the service refuses a null or empty string in "
                f"{field.rsplit('.', 1)[-1]}"
            )
        elif len(str(item)) > CONTAINER_ITEM_MAX:
            problems.append(
                f"{where} ({_preview(item)}) is {len(str(item))} characters; "
                f"the service allows {CONTAINER_ITEM_MAX}"
            )
    return problems


def hyperparameter_problems(field: str, values: Mapping[str, Any] | None) -> list[str]:
    """Hyperparameter keys and values over the service's 256 characters."""
    problems = []
    for key, value in (values or {}).items():
        if len(key) > HYPERPARAMETER_MAX:
            problems.append(f"{field} key {_preview(key)} is over {HYPERPARAMETER_MAX} characters")
        if len(str(value)) > HYPERPARAMETER_MAX:
            problems.append(
                f"{field}['{key}'] is {len(str(value))} characters; the service allows "
                f"{HYPERPARAMETER_MAX}"
            )
    return problems


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _preview(value: Any, width: int = 40) -> str:
    text = str(value)
    return repr(text if len(text) <= width else text[: width - 3] + "...")
