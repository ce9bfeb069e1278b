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
* VolumeKmsKeyId on an instance type with local NVMe storage: "Certain
  Nitro-based instances include local storage ... You can't request a
  VolumeKmsKeyId when using an instance type with local storage"
  (CreateProcessingJob's ProcessingClusterConfig, CreateTrainingJob's
  ResourceConfig, CreateHyperParameterTuningJob's HyperParameterTuningResourceConfig;
  ``INSTANCE_STORE`` lists the types).

``resolve`` substitutes parameter values into a definition's expressions so the
checks see each value as the service would; step properties not known before
the execution runs become a placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

CONTAINER_ITEM_MAX = 256
HYPERPARAMETER_MAX = 256
PARAMETER_VALUE_MAX = 1024
# An execution ID as the service makes them (12 lower-case letters and digits).
EXECUTION_ID_PLACEHOLDER = "a1b2c3d4e5f6"
# Instance types with local NVMe instance storage, by family (``ml.<family>.<size>``): a
# "d" among the attribute letters after the generation (m5d, c5d, r5d, g4dn, p3dn, p4d,
# p4de, m6id...), and the families with instance storage without one. The API references
# name ml.p4d, ml.g4dn and ml.g5 (ResourceConfig.VolumeSizeInGB); the others are those
# of EC2's "Instance store volumes" list that SageMaker offers for jobs.
INSTANCE_STORE = re.compile(
    r"ml\.(?:[a-z]+\d+[a-z]*d[a-z]*(?:-[a-z0-9]+)?"
    r"|g5|g6|g6e|p5|p5e|p5en|p6-b200|trn1|trn1n|trn2)\.[a-z0-9]+"
)
# Create* operation -> step type.
STEP_TYPES = {
    "CreateProcessingJob": "Processing",
    "CreateTrainingJob": "Training",
    "CreateHyperParameterTuningJob": "Tuning",
    "CreateModelPackage": "RegisterModel",
}


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
    """What the service would refuse in a resolved job request, each naming field and rule.

    ``step_type``: Processing, Training, Tuning or RegisterModel (or its Create* operation).
    These are the rules botocore's model does not encode; ``executor.check_request``
    adds botocore's validation and the model's limits.
    """
    step_type = STEP_TYPES.get(step_type, step_type)
    problems: list[str] = []
    if step_type == "Processing":
        app = request.get("AppSpecification", {})
        for field in ("ContainerEntrypoint", "ContainerArguments"):
            problems += container_item_problems(f"AppSpecification.{field}", app.get(field))
        cluster = _dict(_dict(request.get("ProcessingResources")).get("ClusterConfig"))
        problems += volume_key_problems("ProcessingResources.ClusterConfig", cluster)
    elif step_type == "Training":
        problems += algorithm_problems("AlgorithmSpecification", request)
        problems += hyperparameter_problems("HyperParameters", request.get("HyperParameters"))
        problems += volume_key_problems("ResourceConfig", _dict(request.get("ResourceConfig")))
    elif step_type == "Tuning":
        for field, job in training_definitions(request):
            problems += algorithm_problems(f"{field}.AlgorithmSpecification", job)
            problems += hyperparameter_problems(
                f"{field}.StaticHyperParameters", job.get("StaticHyperParameters")
            )
            problems += volume_key_problems(
                f"{field}.ResourceConfig", _dict(job.get("ResourceConfig"))
            )
            problems += volume_key_problems(
                f"{field}.HyperParameterTuningResourceConfig",
                _dict(job.get("HyperParameterTuningResourceConfig")),
                groups="InstanceConfigs",
            )
    return problems


def algorithm_problems(field: str, request: Mapping[str, Any]) -> list[str]:
    """A training job's ContainerEntrypoint and ContainerArguments items."""
    algorithm = _dict(request.get("AlgorithmSpecification"))
    problems: list[str] = []
    for name in ("ContainerEntrypoint", "ContainerArguments"):
        problems += container_item_problems(f"{field}.{name}", algorithm.get(name))
    return problems


def training_definitions(request: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """A tuning request's training job definitions, each with the field that holds it."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(request.get("TrainingJobDefinition"), dict):
        out.append(("TrainingJobDefinition", request["TrainingJobDefinition"]))
    for i, job in enumerate(request.get("TrainingJobDefinitions") or []):
        if isinstance(job, dict):
            out.append((f"TrainingJobDefinitions[{i}]", job))
    return out


def volume_key_problems(
    field: str, resources: Mapping[str, Any], groups: str = "InstanceGroups"
) -> list[str]:
    """A VolumeKmsKeyId beside an instance type with local NVMe storage (``INSTANCE_STORE``)."""
    if not resources.get("VolumeKmsKeyId"):
        return []
    types = [(f"{field}.InstanceType", resources.get("InstanceType"))]
    for i, group in enumerate(resources.get(groups) or []):
        types.append((f"{field}.{groups}[{i}].InstanceType", _dict(group).get("InstanceType")))
    return [
        f"{where}={kind!r} has local NVMe instance storage, which the instance encrypts itself: "
        f"the service refuses {field}.VolumeKmsKeyId with it (leave the key out, or choose an "
        "instance type without instance storage)"
        for where, kind in types
        if isinstance(kind, str)
        and not isinstance(kind, Unresolved)
        and INSTANCE_STORE.fullmatch(kind)
    ]


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


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _preview(value: Any, width: int = 40) -> str:
    text = str(value)
    return repr(text if len(text) <= width else text[: width - 3] + "...")
