"""The definition's expression language: ``Get``, ``Std:Join``, ``Std:JsonGet`` and conditions.

``resolve(value, ctx)`` replaces every expression in a JSON value by what it
evaluates to. ``references(value)`` lists the steps an expression reads, which
makes the data dependencies of the pipeline graph.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from executor.errors import DefinitionError, StepFailed

EXPRESSIONS = ("Get", "Std:Join", "Std:JsonGet")
# One path token: .Name, [0] or ['key'] / ["key"].
_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_:]*)|\[(\d+)\]|\[['\"]([^'\"]*)['\"]\]")


@dataclass
class Context:
    """What expressions can read during one execution."""

    parameters: dict[str, Any]
    execution: dict[str, Any]
    # Step name -> its properties (the Describe* response of its job, or the step's own).
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (step name, property file name) -> parsed JSON; filled by ``read_property_file``.
    property_files: dict[tuple[str, str], Any] = field(default_factory=dict)
    # Reads a property file of a step on demand: (step, file name) -> parsed JSON.
    read_property_file: Callable[[str, str], Any] | None = None


def is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSIONS


def parse_path(path: str) -> list[str | int]:
    """``Steps.A.Outputs['x'].S3Uri`` -> ``['Steps', 'A', 'Outputs', 'x', 'S3Uri']``."""
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if not match or match.end() == pos:
            raise DefinitionError(f"Cannot parse the property path {path!r} at {path[pos:]!r}.")
        name, index, key = match.groups()
        tokens.append(int(index) if index is not None else (name if name is not None else key))
        pos = match.end()
    return tokens


def walk(value: Any, tokens: list[str | int], shown: str) -> Any:
    """Follow ``tokens`` into ``value``; a string key on a list selects by its ``*Name``."""
    for token in tokens:
        if isinstance(token, int):
            if not isinstance(value, list) or token >= len(value):
                raise StepFailed(f"Property {shown}: index [{token}] is out of range.")
            value = value[token]
        elif isinstance(value, list):
            matches = [
                item
                for item in value
                if isinstance(item, dict)
                and any(k.endswith("Name") and v == token for k, v in item.items())
            ]
            if not matches:
                raise StepFailed(f"Property {shown}: no item named {token!r}.")
            value = matches[0]
        elif isinstance(value, dict) and token in value:
            value = value[token]
        else:
            raise StepFailed(f"Property {shown}: {token!r} is not set.")
    return value


def get(path: str, ctx: Context) -> Any:
    tokens = parse_path(path)
    root = tokens[0]
    if root == "Parameters" and len(tokens) == 2:
        if tokens[1] not in ctx.parameters:
            raise DefinitionError(f"{{'Get': {path!r}}} names no parameter of the pipeline.")
        return ctx.parameters[tokens[1]]
    if root == "Execution" and len(tokens) == 2:
        if tokens[1] not in ctx.execution:
            raise DefinitionError(
                f"{{'Get': {path!r}}}: unknown execution variable; known: "
                f"{', '.join(sorted(ctx.execution))}."
            )
        return ctx.execution[tokens[1]]
    if root == "Steps" and len(tokens) >= 3:
        step = str(tokens[1])
        if step not in ctx.properties:
            raise StepFailed(f"Property {path}: step {step!r} has no properties (did it run?).")
        return walk(ctx.properties[step], tokens[2:], path)
    raise DefinitionError(f"Unsupported reference {{'Get': {path!r}}}.")


def text(value: Any) -> str:
    """A resolved value as the service writes it into a string."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def json_path(document: Any, path: str, shown: str) -> Any:
    """A JsonPath as the SDK emits it: ``a.b[0].c`` (a leading ``$.`` is allowed)."""
    path = path.removeprefix("$").removeprefix(".")
    return walk(document, parse_path(path), shown)


def resolve(value: Any, ctx: Context) -> Any:
    """``value`` with every expression evaluated."""
    if is_expression(value):
        ((kind, body),) = value.items()
        if kind == "Get":
            return get(body, ctx)
        if kind == "Std:Join":
            return str(body.get("On", "")).join(text(resolve(v, ctx)) for v in body["Values"])
        return json_get(body, ctx)
    if isinstance(value, dict):
        return {k: resolve(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ctx) for v in value]
    return value


def json_get(body: dict[str, Any], ctx: Context) -> Any:
    ref = body.get("PropertyFile")
    path = resolve(body.get("Path"), ctx)
    if isinstance(ref, dict) and "Get" in ref:
        tokens = parse_path(ref["Get"])
        if len(tokens) != 4 or tokens[0] != "Steps" or tokens[2] != "PropertyFiles":
            raise DefinitionError(f"Std:JsonGet: bad property file reference {ref['Get']!r}.")
        key = (str(tokens[1]), str(tokens[3]))
        if key not in ctx.property_files:
            if ctx.read_property_file is None:
                raise StepFailed(f"Std:JsonGet: property file {ref['Get']} is not available.")
            ctx.property_files[key] = ctx.read_property_file(*key)
        return json_path(ctx.property_files[key], path, f"{ref['Get']} at {path!r}")
    if "S3Uri" in body and ctx.read_property_file is not None:
        # JsonGet on an S3 object (newer SDKs): read the object directly.
        uri = text(resolve(body["S3Uri"], ctx))
        document = ctx.read_property_file("", uri)
        return json_path(document, path, f"{uri} at {path!r}")
    raise DefinitionError(f"Std:JsonGet needs a PropertyFile reference: {body!r}.")


def references(value: Any) -> Iterator[str]:
    """The names of the steps an expression in ``value`` reads."""
    if isinstance(value, dict):
        if "Get" in value and isinstance(value["Get"], str):
            tokens = parse_path(value["Get"]) if value["Get"].startswith("Steps.") else []
            if len(tokens) >= 2:
                yield str(tokens[1])
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


# ------------------------------------------------------------------------- conditions

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


CONDITION_TYPES = (*COMPARISONS, "In", "Not", "Or")


def _number(value: Any) -> float | None:
    """``value`` as a number: a number, or a string that reads as one (JSON values, parameters)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _comparable(kind: str, left: Any, right: Any) -> tuple[Any, Any]:
    """Numbers compare as numbers (a numeric string counts), text as text.

    A number against text that is no number fails the step: the SDK's local mode fails
    it ("Condition of type [...] not supported between ...",
    ``sagemaker.mlops.local.pipeline._ConditionStepExecutor``) rather than compare
    the number as text.
    """
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a, b
    numbers = [isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right)]
    if any(numbers):
        raise StepFailed(
            f"Condition of type [{kind}] not supported between [{text(left)}] of type "
            f"[{type(left).__name__}] and [{text(right)}] of type [{type(right).__name__}]: "
            "a number compares only with a number."
        )
    return text(left), text(right)


def condition(cond: dict[str, Any], ctx: Context) -> bool:
    """Evaluate one condition of a ConditionStep (every type the SDK emits)."""
    kind = cond.get("Type")
    if kind in COMPARISONS:
        left, right = _comparable(
            kind, resolve(cond["LeftValue"], ctx), resolve(cond["RightValue"], ctx)
        )
        return COMPARISONS[kind](left, right)
    if kind == "In":
        query = resolve(cond["QueryValue"], ctx)
        values = [resolve(v, ctx) for v in cond["Values"]]
        return any(_same(query, v) for v in values)
    if kind == "Not":
        return not condition(cond["Condition"], ctx)
    if kind == "Or":
        return any(condition(c, ctx) for c in cond["Conditions"])
    raise DefinitionError(f"Condition type {kind!r} is not supported locally.")


def _same(query: Any, value: Any) -> bool:
    """``In``: a value equals the query (numbers as numbers); a number never equals text."""
    a, b = _number(query), _number(value)
    if a is not None and b is not None:
        return a == b
    return text(query) == text(value)


def check_condition(cond: Any, step: str) -> None:
    """A ``DefinitionError`` unless ``cond`` is a condition of the language (before anything runs).

    ``Not`` is ``{"Type": "Not", "Condition": {...}}`` (``sagemaker.core.workflow.conditions``);
    the service refuses the older SDKs' ``Expression`` ("Unable to parse pipeline
    definition. Cannot parse object, unknown property 'Expression'",
    sagemaker-python-sdk #2746). There is no ``And``: a condition step's list of
    conditions is their conjunction.
    """
    kind = cond.get("Type") if isinstance(cond, dict) else None
    if kind not in CONDITION_TYPES:
        hint = " (a step's list of Conditions is their conjunction)" if kind == "And" else ""
        raise DefinitionError(
            f"Step {step!r}: condition type {kind!r} is not one of "
            f"{', '.join(CONDITION_TYPES)}{hint}."
        )
    if kind == "Not":
        if "Expression" in cond:
            raise DefinitionError(
                f"Step {step!r}: a Not condition takes its condition in 'Condition'; the service "
                "refuses 'Expression' (Cannot parse object, unknown property 'Expression')."
            )
        if not isinstance(cond.get("Condition"), dict):
            raise DefinitionError(
                f"Step {step!r}: a Not condition needs a 'Condition': {json.dumps(cond)[:200]}."
            )
        check_condition(cond["Condition"], step)
    elif kind == "Or":
        for inner in cond.get("Conditions") or []:
            check_condition(inner, step)
