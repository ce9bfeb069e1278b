"""The parts of a definition the executor needs: parameters and the step graph."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from executor import properties, retry
from executor.errors import DefinitionError, ParameterError
from executor.expressions import check_condition, parse_path, references
from executor.service_rules import PARAMETER_VALUE_MAX

SUPPORTED = ("Processing", "Training", "Tuning", "Condition", "Fail", "RegisterModel")
# Step names as the service model's StepName shape has them (botocore: at most 64 characters
# of [A-Za-z0-9\-_]); the SDK builds definitions with any name and leaves them to the service.
STEP_NAME = re.compile(r"[A-Za-z0-9\-_]{1,64}")


@dataclass
class Step:
    """One step of the graph; ``branch`` is (condition step, 'If'|'Else') for nested steps."""

    name: str
    type: str
    raw: dict[str, Any]
    depends_on: set[str] = field(default_factory=set)
    branch: tuple[str, str] | None = None
    retry_policies: list[retry.Policy] = field(default_factory=list)

    @property
    def arguments(self) -> dict[str, Any]:
        return self.raw.get("Arguments", {})


def load(text: str | dict[str, Any]) -> dict[str, Any]:
    """The definition as a dict; JSON errors are a ``DefinitionError``."""
    if isinstance(text, dict):
        definition: Any = text
    else:
        try:
            definition = json.loads(text)
        except ValueError as exc:
            raise DefinitionError(f"The pipeline definition is not valid JSON: {exc}.") from exc
    if not isinstance(definition, dict) or not isinstance(definition.get("Steps"), list):
        raise DefinitionError("The pipeline definition has no 'Steps' list.")
    _check_shape(definition)
    return definition


def _check_shape(definition: dict[str, Any]) -> None:
    """Refuse a definition whose parts have the wrong JSON type, naming the part.

    Only the shape the executor walks is checked (lists of objects, objects of
    arguments); what the values mean is checked where each is used.
    """

    def objects(value: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise DefinitionError(f"{where} must be a list of JSON objects, not {_shown(value)}.")
        return value

    for index, spec in enumerate(objects(definition.get("Parameters", []), "'Parameters'")):
        if not isinstance(spec.get("Name"), str) or not spec["Name"]:
            raise DefinitionError(f"Parameter {index} has no Name: {_shown(spec)}.")

    def check_step(raw: dict[str, Any], where: str) -> None:
        name = raw.get("Name") if isinstance(raw.get("Name"), str) else where
        for key, kind in (("Arguments", dict), ("DependsOn", list), ("RetryPolicies", list)):
            if key in raw and not isinstance(raw[key], kind):
                expected = "a JSON object" if kind is dict else "a list"
                raise DefinitionError(
                    f"Step {name!r}: {key} must be {expected}, not {_shown(raw[key])}."
                )
        if not all(isinstance(d, str) for d in raw.get("DependsOn", [])):
            raise DefinitionError(f"Step {name!r}: DependsOn must list step names.")
        if raw.get("Type") == "Condition":
            args = raw.get("Arguments", {})
            objects(args.get("Conditions", []), f"Step {name!r}: Conditions")
            for which in ("IfSteps", "ElseSteps"):
                for i, inner in enumerate(objects(args.get(which, []), f"Step {name!r}: {which}")):
                    check_step(inner, f"{which}[{i}] of {name}")

    for index, raw in enumerate(objects(definition["Steps"], "'Steps'")):
        check_step(raw, f"Steps[{index}]")


def _shown(value: Any) -> str:
    """A JSON value as a message shows it: at most 200 characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def steps(definition: dict[str, Any]) -> dict[str, Step]:
    """Every step by name (those inside condition steps included), with its dependencies."""
    out: dict[str, Step] = {}

    def add(raw: dict[str, Any], branch: tuple[str, str] | None) -> None:
        name, kind = raw.get("Name"), raw.get("Type")
        if not name or not kind:
            raise DefinitionError(f"A step has no Name or Type: {json.dumps(raw)[:200]}.")
        if not isinstance(name, str) or not STEP_NAME.fullmatch(name):
            raise DefinitionError(
                f"Step name {name!r} is not valid: the service takes 1 to 64 letters, digits, "
                "'-' and '_' (^[A-Za-z0-9\\-_]{1,64}$)."
            )
        if name in out:
            raise DefinitionError(f"Two steps are named {name!r}: step names must be unique.")
        if kind not in SUPPORTED:
            raise DefinitionError(
                f"Step {name!r} has type {kind!r}, which is not supported locally (supported: "
                f"{', '.join(SUPPORTED)}). Run this pipeline on SageMaker instead."
            )
        step = Step(name, kind, raw, branch=branch)
        step.retry_policies = retry.policies(name, kind, raw.get("RetryPolicies"))
        step.depends_on |= set(raw.get("DependsOn") or [])
        args = raw.get("Arguments", {})
        if kind == "Condition":
            for cond in args.get("Conditions", []):
                check_condition(cond, name)
            step.depends_on |= set(references(args.get("Conditions", [])))
        else:
            step.depends_on |= set(references(args))
        if branch is not None:
            step.depends_on.add(branch[0])
        out[name] = step
        if kind == "Condition":
            for which in ("If", "Else"):
                for inner in args.get(f"{which}Steps", []):
                    add(inner, (name, which))

    for raw in definition["Steps"]:
        add(raw, None)
    for step in out.values():
        step.depends_on.discard(step.name)
        unknown = step.depends_on - set(out)
        if unknown:
            raise DefinitionError(
                f"Step {step.name!r} depends on unknown step(s) {', '.join(sorted(unknown))}."
            )
    _check_acyclic(out)
    for step in out.values():
        _check_property_reads(step, out)
    return out


def _check_property_reads(step: Step, graph: dict[str, Step]) -> None:
    """Each ``Get`` of a step property names a field of that step's Describe* response."""
    for path in properties.step_reads(step.arguments):
        tokens = parse_path(path)
        if len(tokens) >= 2 and str(tokens[1]) in graph:
            target = graph[str(tokens[1])]
            shown = f"{{'Get': {path!r}}}"
            properties.check_path(target.name, target.type, tokens[2:], shown, step.name)


def _check_acyclic(graph: dict[str, Step]) -> None:
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise DefinitionError(f"The steps form a cycle: {' -> '.join([*path, name])}.")
        state[name] = 1
        for dep in sorted(graph[name].depends_on):
            visit(dep, [*path, name])
        state[name] = 2

    for name in graph:
        visit(name, [])


# ------------------------------------------------------------------------- parameters


def _typed(name: str, kind: str, value: Any) -> Any:
    """A parameter value converted to its declared type, as the service does."""
    try:
        if kind == "Integer":
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind == "Float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind == "Boolean":
            if isinstance(value, bool):
                return value
            if str(value).lower() not in ("true", "false"):
                raise ValueError
            return str(value).lower() == "true"
    except (TypeError, ValueError):
        expected = {"Integer": "a whole number", "Float": "a finite number"}.get(kind, "true/false")
        raise ParameterError(
            f"Parameter {name}={value!r} is not a valid {kind} value ({expected})."
        ) from None
    return str(value)


def parameters(definition: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """The values of every parameter: given at start, else the default; checked as the service.

    The service refuses an unknown name, an empty value and a value outside the
    parameter's EnumValues; a parameter with neither a value nor a default is missing.
    """
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ParameterError(
            f"Unknown pipeline parameter(s) {', '.join(unknown)}; the pipeline has "
            f"{', '.join(sorted(declared)) or 'none'}."
        )
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        kind = spec.get("Type", "String")
        if name in given:
            raw = given[name]
            if raw == "":
                default = f" ({spec['DefaultValue']!r})" if "DefaultValue" in spec else ""
                raise ParameterError(
                    f"Parameter {name}= is empty: the service refuses an empty parameter value "
                    f"at StartPipelineExecution. Leave --param {name} out to use its default"
                    f"{default}."
                )
            if len(raw) > PARAMETER_VALUE_MAX:
                raise ParameterError(
                    f"Parameter {name} is {len(raw)} characters long; the service allows at "
                    f"most {PARAMETER_VALUE_MAX}."
                )
        elif "DefaultValue" in spec:
            raw = spec["DefaultValue"]
        else:
            raise ParameterError(f"Parameter {name} has no default: pass --param {name}=VALUE.")
        value = _typed(name, kind, raw)
        enum = spec.get("EnumValues")
        if enum and value not in enum:
            raise ParameterError(
                f"Parameter {name}={value!r} is not one of its allowed values: {', '.join(enum)}."
            )
        values[name] = value
    return values
