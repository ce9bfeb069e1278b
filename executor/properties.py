"""Step properties: what ``{"Get": "Steps.<name>.<path>"}`` may read, from botocore's output shapes.

"The properties attribute of a Pipelines step matches the object returned by a
Describe call for the corresponding SageMaker AI job type" (SageMaker developer
guide, "Pipelines steps", Step properties). The SDK builds each step's
``properties`` from the same shapes (``sagemaker.mlops.workflow.steps``,
``model_step``, ``condition_step``): a tuning step's are DescribeHyperParameterTuningJob's
and ListTrainingJobsForHyperParameterTuningJob's (``TrainingJobSummaries``), a
RegisterModel step's DescribeModelPackage's, a condition step's ``Outcome``. A
request field that is not in the response (``Tags``, ``ClientToken``) is no property.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from executor.errors import DefinitionError

# Step type -> the output shapes its properties come from.
SHAPES = {
    "Processing": ("DescribeProcessingJobResponse",),
    "Training": ("DescribeTrainingJobResponse",),
    "Tuning": (
        "DescribeHyperParameterTuningJobResponse",
        "ListTrainingJobsForHyperParameterTuningJobResponse",
    ),
    "RegisterModel": ("DescribeModelPackageOutput",),
}
# Steps whose properties are not a service response (ConditionStep: ``Outcome``).
OWN_PROPERTIES = {"Condition": ("Outcome",), "Fail": ()}


@functools.cache
def _shapes(step_type: str) -> tuple[Any, ...]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return tuple(model.shape_for(name) for name in SHAPES[step_type])


def fields(step_type: str) -> list[str]:
    """The top-level properties of a step of ``step_type``."""
    if step_type in OWN_PROPERTIES:
        return list(OWN_PROPERTIES[step_type])
    return [name for shape in _shapes(step_type) for name in shape.members]


def describe(step_type: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` cut to the fields of the step type's Describe* response(s)."""
    allowed = set(fields(step_type))
    return {k: v for k, v in values.items() if k in allowed}


def check_path(step: str, step_type: str, tokens: list[str | int], shown: str, reader: str) -> None:
    """A ``DefinitionError`` unless ``tokens`` (after ``Steps.<step>``) name a property.

    Each name must be a member of the shape it is read from; a list is indexed by a
    number or selected by an item's ``*Name``; a map takes any key.
    """
    if not tokens:
        raise DefinitionError(f"Step {reader!r} reads {shown}: name a property of step {step!r}.")
    if step_type in OWN_PROPERTIES:
        if tokens[0] not in OWN_PROPERTIES[step_type] or len(tokens) > 1:
            known = ", ".join(OWN_PROPERTIES[step_type]) or "none"
            raise DefinitionError(
                f"Step {reader!r} reads {shown}: {tokens[0]!r} is not a property of "
                f"{step_type} step {step!r} (its properties: {known})."
            )
        return
    first = tokens[0]
    shape = next((s.members[first] for s in _shapes(step_type) if first in s.members), None)
    if shape is None:
        raise DefinitionError(
            f"Step {reader!r} reads {shown}: {first!r} is not a property of {step_type} step "
            f"{step!r}; its properties are the fields of {' and '.join(SHAPES[step_type])}."
        )
    where = str(first)
    for token in tokens[1:]:
        kind = shape.type_name
        if kind == "list":
            shape = shape.member
        elif kind == "map" and isinstance(token, str):
            shape = shape.value
        elif kind == "structure" and isinstance(token, str) and token in shape.members:
            shape = shape.members[token]
        else:
            raise DefinitionError(
                f"Step {reader!r} reads {shown}: {token!r} is not a field of {where} "
                f"({shape.name}) in the properties of step {step!r}."
            )
        where += f"[{token}]" if isinstance(token, int) else f".{token}"


def step_reads(value: Any) -> Iterator[str]:
    """Every ``Get`` path of ``value`` that reads a step's property (property files aside)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Get" and isinstance(item, str) and item.startswith("Steps."):
                yield item
            elif key == "PropertyFile":
                continue  # Std:JsonGet's reference to a property file
            else:
                yield from step_reads(item)
    elif isinstance(value, list):
        for item in value:
            yield from step_reads(item)
