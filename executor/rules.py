"""The service's checks of a job request, run on the resolved request before a job starts.

Three layers, each naming the field and the rule it breaks:

1. botocore's own parameter validation for the API (required members, types, minimums);
2. the limits botocore's model declares but does not enforce client-side: maximum
   lengths, patterns and enum values of every string;
3. service rules the model does not encode and that are known to bite (see README,
   "Run the pipeline on this machine"): no empty ContainerEntrypoint or
   ContainerArguments item (sagemaker-python-sdk #3564, #3758), hyperparameter
   values of at most 256 characters (the CreateTrainingJob reference says 256 in
   prose, the model says 2500: the stricter limit is taken), S3 URI forms and
   processing paths under /opt/ml/processing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from executor import service_rules
from executor.errors import RequestRefused
from executor.service_rules import Unresolved

OPERATIONS = {
    "Processing": "CreateProcessingJob",
    "Training": "CreateTrainingJob",
    "Tuning": "CreateHyperParameterTuningJob",
    "RegisterModel": "CreateModelPackage",
}
JOB_NAME_FIELDS = {
    "Processing": "ProcessingJobName",
    "Training": "TrainingJobName",
    "Tuning": "HyperParameterTuningJobName",
}
PROCESSING_ROOT = "/opt/ml/processing/"
# How many of an enum's values a refusal lists.
ENUM_SHOWN = 8
_BUCKET = re.compile(r"(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@functools.cache
def _model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def check(step_type: str, request: dict[str, Any]) -> None:
    """Raise ``RequestRefused`` when the service would refuse ``request``."""
    found = problems(step_type, request)
    if found:
        raise RequestRefused("; ".join(found) + ".")


# Job names a step's job gets at start, as the service makes them (a job name is not
# in the definition): a processing or training job's and a tuning job's (32 at most).
_START_NAMES = {
    "Processing": f"pipelines-{service_rules.EXECUTION_ID_PLACEHOLDER}-step-0a1b2c3d",
    "Training": f"pipelines-{service_rules.EXECUTION_ID_PLACEHOLDER}-step-0a1b2c3d",
    "Tuning": f"{service_rules.EXECUTION_ID_PLACEHOLDER[:8]}-step-0a1b2c3d",
}


def step_problems(step: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    """What the service would refuse in a definition step's job once started with ``values``.

    ``values`` are every parameter's value (defaults included). The request is
    resolved with them, gets the job name the service would give it, and runs
    ``problems``; a step that starts no job (condition, fail) has none.
    """
    kind = str(step.get("Type", ""))
    if kind not in OPERATIONS:
        return []
    request = service_rules.resolve(step.get("Arguments", {}), values)
    if kind in JOB_NAME_FIELDS:
        request[JOB_NAME_FIELDS[kind]] = _START_NAMES[kind]
    return problems(kind, request)


def problems(kind: str, request: Mapping[str, Any]) -> list[str]:
    """Everything the service would refuse in a resolved request; empty when it would accept it.

    ``kind``: a step type (Processing, Training, Tuning, RegisterModel) or its Create*
    operation. Botocore's validation first (when it fails, the other checks would read
    a malformed request, so they do not run), then the model's limits and the service
    rules. A value still unresolved (``service_rules.Unresolved``: a step property
    before the execution runs) passes the limits and rules that read its content.
    """
    from botocore.validate import ParamValidator

    step_type = service_rules.STEP_TYPES.get(kind, kind)
    if step_type not in OPERATIONS:
        raise ValueError(
            f"{kind!r} is not a job request type (choose {', '.join(OPERATIONS)} or "
            f"{', '.join(service_rules.STEP_TYPES)})."
        )
    operation = OPERATIONS[step_type]
    shape = _model().operation_model(operation).input_shape
    report = ParamValidator().validate(dict(request), shape)
    if report.has_errors():
        return [f"{operation} request is invalid: {' '.join(report.generate_report().split())}"]
    found: list[str] = []
    _limits(request, shape, "", found)
    found += service_rules.request_problems(step_type, request)
    SERVICE_RULES[step_type](request, found)
    return found


def _limits(value: Any, shape: Any, where: str, found: list[str]) -> None:
    """Maximum lengths, patterns and enums of the model, which botocore does not check."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, Mapping):
        for key, item in value.items():
            if key in shape.members:
                _limits(item, shape.members[key], f"{where}.{key}" if where else key, found)
    elif kind == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            _limits(item, shape.member, f"{where}[{i}]", found)
    elif kind == "map" and isinstance(value, Mapping):
        for key, item in value.items():
            _limits(key, shape.key, f"{where} key {key!r}", found)
            _limits(item, shape.value, f"{where}[{key!r}]", found)
    elif kind == "string" and isinstance(value, str) and not isinstance(value, Unresolved):
        meta = shape.metadata
        pattern = _pattern(meta.get("pattern"))
        if "max" in meta and len(value) > meta["max"]:
            found.append(
                f"{where} is {len(value)} characters long; the service allows at most "
                f"{meta['max']} ({shape.name})"
            )
        elif pattern and not pattern.fullmatch(value):
            found.append(f"{where}={value!r} does not match the pattern {pattern.pattern!r}")
        elif shape.enum and value not in shape.enum:
            values = ", ".join(shape.enum[:ENUM_SHOWN])
            more = (
                f", ... ({len(shape.enum)} values of {shape.name})"
                if len(shape.enum) > ENUM_SHOWN
                else ""
            )
            found.append(f"{where}={value!r} is not one of {values}{more}")


# Java character classes of the model's patterns, in Python's terms (slightly broader).
_CLASSES = {
    r"\p{Alnum}": r"\w",
    r"\p{L}": r"\w",
    r"\p{M}": r"\w",
    r"\p{N}": r"\w",
    r"\p{Z}": r"\s",
    r"\p{P}": r"\S",
    r"\p{S}": r"\S",
}


@functools.cache
def _pattern(pattern: str | None) -> re.Pattern[str] | None:
    """The model's pattern compiled for Python; None when it cannot be translated."""
    if not pattern:
        return None
    for java, python in _CLASSES.items():
        pattern = pattern.replace(java, python)
    try:
        return re.compile(pattern, flags=re.DOTALL)
    except re.error:
        return None


# ----------------------------------------------------------------------- service rules


def s3_uri(where: str, uri: Any, found: list[str]) -> None:
    """An S3 URI the service accepts: ``s3://<valid bucket>/<key>``."""
    if isinstance(uri, Unresolved):
        return
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        found.append(f"{where}={uri!r} is not an S3 URI (s3://bucket/key)")
        return
    bucket = uri.removeprefix("s3://").partition("/")[0]
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        found.append(f"{where}={uri!r}: {bucket!r} is not a valid S3 bucket name")


def hyperparameter_types(where: str, values: Any, found: list[str]) -> None:
    """String values (their lengths are ``service_rules``')."""
    for key, value in (values or {}).items():
        if not isinstance(value, str):
            found.append(f"{where}[{key!r}] must be a string, not {type(value).__name__}")


def _processing(request: Mapping[str, Any], found: list[str]) -> None:
    for i, item in enumerate(request.get("ProcessingInputs", [])):
        where = f"ProcessingInputs[{i}]"
        if "S3Input" in item:
            s3_uri(f"{where}.S3Input.S3Uri", item["S3Input"].get("S3Uri"), found)
            _local(f"{where}.S3Input.LocalPath", item["S3Input"].get("LocalPath"), found)
    outputs = request.get("ProcessingOutputConfig", {}).get("Outputs", [])
    for i, item in enumerate(outputs):
        where = f"ProcessingOutputConfig.Outputs[{i}]"
        if "S3Output" in item:
            s3_uri(f"{where}.S3Output.S3Uri", item["S3Output"].get("S3Uri"), found)
            _local(f"{where}.S3Output.LocalPath", item["S3Output"].get("LocalPath"), found)
    for kind, items, key in (
        ("ProcessingInputs", request.get("ProcessingInputs", []), "InputName"),
        ("ProcessingOutputConfig.Outputs", outputs, "OutputName"),
    ):
        names = [item.get(key) for item in items]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            found.append(f"{kind}: {key} must be unique, found {', '.join(duplicates)} twice")


def _local(where: str, path: Any, found: list[str]) -> None:
    if isinstance(path, Unresolved):
        return
    if not isinstance(path, str) or not path.startswith(PROCESSING_ROOT):
        found.append(f"{where}={path!r} must be a folder under {PROCESSING_ROOT}")


def _training_definition(
    request: Mapping[str, Any], hyper_key: str, found: list[str], field: str = ""
) -> None:
    at = f"{field}." if field else ""
    algo = request.get("AlgorithmSpecification", {})
    hyperparameter_types(f"{at}{hyper_key}", request.get(hyper_key), found)
    for i, channel in enumerate(request.get("InputDataConfig", [])):
        source = channel.get("DataSource", {}).get("S3DataSource")
        if source:
            s3_uri(
                f"{at}InputDataConfig[{i}].DataSource.S3DataSource.S3Uri",
                source.get("S3Uri"),
                found,
            )
    output = request.get("OutputDataConfig", {}).get("S3OutputPath")
    s3_uri(f"{at}OutputDataConfig.S3OutputPath", output, found)
    for metric in algo.get("MetricDefinitions", []):
        try:
            re.compile(metric.get("Regex", ""))
        except re.error as exc:
            found.append(f"MetricDefinitions {metric.get('Name')!r}: Regex is not valid ({exc})")


def _training(request: Mapping[str, Any], found: list[str]) -> None:
    _training_definition(request, "HyperParameters", found)


def _tuning(request: Mapping[str, Any], found: list[str]) -> None:
    for field, job in service_rules.training_definitions(request):
        _training_definition(job, "StaticHyperParameters", found, field)
    if request.get("WarmStartConfig"):
        found.append(
            "WarmStartConfig: a warm start reads its parent tuning jobs' results on the "
            "service; tuning jobs here start cold (leave it out to run locally)"
        )
    definition = request.get("TrainingJobDefinition")
    if not definition:
        found.append("only tuning jobs with one TrainingJobDefinition run locally")
        return
    config = request.get("HyperParameterTuningJobConfig", {})
    ranges = config.get("ParameterRanges", {})
    tuned = [r["Name"] for group in ranges.values() for r in group]
    static = set(definition.get("StaticHyperParameters") or {})
    clash = sorted(static & set(tuned))
    if clash:
        found.append(
            f"hyperparameter(s) {', '.join(clash)} are both static and tuned; the service "
            "refuses the tuning job"
        )
    _ranges(config, found)
    objective = config.get("HyperParameterTuningJobObjective", {}).get("MetricName")
    names = [m["Name"] for m in definition["AlgorithmSpecification"].get("MetricDefinitions", [])]
    if objective and names and objective not in names:
        found.append(
            f"the objective metric {objective!r} is not among the MetricDefinitions "
            f"({', '.join(names)})"
        )


# Tuning strategies that run here.
STRATEGIES = ("Bayesian", "Random", "Grid")


def _ranges(config: Mapping[str, Any], found: list[str]) -> None:
    """The strategy runs here; each range's bounds are in order and fit its scaling type."""
    strategy = config.get("Strategy", "Bayesian")
    if strategy not in STRATEGIES:
        found.append(
            f"tuning strategy {strategy!r} is not supported locally ({', '.join(STRATEGIES)})"
        )
    ranges = config.get("ParameterRanges", {})
    numeric = ranges.get("ContinuousParameterRanges", []) + ranges.get("IntegerParameterRanges", [])
    if strategy == "Grid" and numeric:
        found.append("the Grid strategy takes only CategoricalParameterRanges, as on the service")
    for spec in numeric:
        try:
            low, high = float(spec["MinValue"]), float(spec["MaxValue"])
        except (TypeError, ValueError):
            found.append(f"range {spec['Name']}: MinValue and MaxValue must be numbers")
            continue
        scaling = spec.get("ScalingType", "Auto")
        if low > high:
            found.append(f"range {spec['Name']}: MinValue > MaxValue")
        elif scaling == "Logarithmic" and low <= 0:
            found.append(f"range {spec['Name']}: Logarithmic needs MinValue > 0")
        elif scaling == "ReverseLogarithmic" and not (low >= 0 and high < 1):
            found.append(
                f"range {spec['Name']}: ReverseLogarithmic needs 0 <= MinValue, MaxValue < 1"
            )


def _register(request: Mapping[str, Any], found: list[str]) -> None:
    for i, container in enumerate(request.get("InferenceSpecification", {}).get("Containers", [])):
        if "ModelDataUrl" in container:
            s3_uri(
                f"InferenceSpecification.Containers[{i}].ModelDataUrl",
                container["ModelDataUrl"],
                found,
            )
    metrics = request.get("ModelMetrics", {})
    for group, sources in metrics.items():
        for name, source in (sources or {}).items():
            if isinstance(source, dict) and "S3Uri" in source:
                s3_uri(f"ModelMetrics.{group}.{name}.S3Uri", source["S3Uri"], found)


SERVICE_RULES: dict[str, Callable[[Mapping[str, Any], list[str]], None]] = {
    "Processing": _processing,
    "Training": _training,
    "Tuning": _tuning,
    "RegisterModel": _register,
}
