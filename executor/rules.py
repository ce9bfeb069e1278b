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
from typing import Any

from executor import service_rules
from executor.errors import RequestRefused

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
_BUCKET = re.compile(r"(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@functools.cache
def _model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def check(step_type: str, request: dict[str, Any]) -> None:
    """Raise ``RequestRefused`` when the service would refuse ``request``."""
    from botocore.validate import ParamValidator

    shape = _model().operation_model(OPERATIONS[step_type]).input_shape
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        text = " ".join(report.generate_report().split())
        raise RequestRefused(f"{OPERATIONS[step_type]} request is invalid: {text}")
    _limits(request, shape, "")
    SERVICE_RULES[step_type](request)


def _limits(value: Any, shape: Any, where: str) -> None:
    """Maximum lengths, patterns and enums of the model, which botocore does not check."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                _limits(item, shape.members[key], f"{where}.{key}" if where else key)
    elif kind == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            _limits(item, shape.member, f"{where}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            _limits(key, shape.key, f"{where} key {key!r}")
            _limits(item, shape.value, f"{where}[{key!r}]")
    elif kind == "string" and isinstance(value, str):
        meta = shape.metadata
        if "max" in meta and len(value) > meta["max"]:
            raise RequestRefused(
                f"{where} is {len(value)} characters long; the service allows at most "
                f"{meta['max']} ({shape.name})."
            )
        pattern = _pattern(meta.get("pattern"))
        if pattern and not pattern.fullmatch(value):
            raise RequestRefused(f"{where}={value!r} does not match the pattern {pattern!r}.")
        if shape.enum and value not in shape.enum:
            raise RequestRefused(f"{where}={value!r} is not one of {', '.join(shape.enum)}.")


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


def s3_uri(where: str, uri: Any) -> None:
    """An S3 URI the service accepts: ``s3://<valid bucket>/<key>``."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise RequestRefused(f"{where}={uri!r} is not an S3 URI (s3://bucket/key).")
    bucket = uri.removeprefix("s3://").partition("/")[0]
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise RequestRefused(f"{where}={uri!r}: {bucket!r} is not a valid S3 bucket name.")


def no_empty_items(where: str, items: Any) -> None:
    """No empty or over-long container item (``executor.service_rules``)."""
    problems = service_rules.container_item_problems(where, items)
    if problems:
        raise RequestRefused(problems[0] + ".")


def hyperparameters(where: str, values: dict[str, Any] | None) -> None:
    """String values within the service's limits (``executor.service_rules``)."""
    for key, value in (values or {}).items():
        if not isinstance(value, str):
            raise RequestRefused(f"{where}[{key!r}] must be a string, not {type(value).__name__}.")
    problems = service_rules.hyperparameter_problems(where, values)
    if problems:
        raise RequestRefused(problems[0] + ".")


def _processing(request: dict[str, Any]) -> None:
    app = request.get("AppSpecification", {})
    no_empty_items("AppSpecification.ContainerEntrypoint", app.get("ContainerEntrypoint"))
    no_empty_items("AppSpecification.ContainerArguments", app.get("ContainerArguments"))
    for i, item in enumerate(request.get("ProcessingInputs", [])):
        where = f"ProcessingInputs[{i}]"
        if "S3Input" in item:
            s3_uri(f"{where}.S3Input.S3Uri", item["S3Input"].get("S3Uri"))
            _local(f"{where}.S3Input.LocalPath", item["S3Input"].get("LocalPath"))
    outputs = request.get("ProcessingOutputConfig", {}).get("Outputs", [])
    for i, item in enumerate(outputs):
        where = f"ProcessingOutputConfig.Outputs[{i}]"
        if "S3Output" in item:
            s3_uri(f"{where}.S3Output.S3Uri", item["S3Output"].get("S3Uri"))
            _local(f"{where}.S3Output.LocalPath", item["S3Output"].get("LocalPath"))
    for kind, items, key in (
        ("ProcessingInputs", request.get("ProcessingInputs", []), "InputName"),
        ("ProcessingOutputConfig.Outputs", outputs, "OutputName"),
    ):
        names = [item.get(key) for item in items]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RequestRefused(
                f"{kind}: {key} must be unique, found {', '.join(duplicates)} twice."
            )


def _local(where: str, path: Any) -> None:
    if not isinstance(path, str) or not path.startswith(PROCESSING_ROOT):
        raise RequestRefused(f"{where}={path!r} must be a folder under {PROCESSING_ROOT}.")


def _training_definition(request: dict[str, Any], hyper_key: str) -> None:
    algo = request.get("AlgorithmSpecification", {})
    no_empty_items("AlgorithmSpecification.ContainerEntrypoint", algo.get("ContainerEntrypoint"))
    no_empty_items("AlgorithmSpecification.ContainerArguments", algo.get("ContainerArguments"))
    hyperparameters(hyper_key, request.get(hyper_key))
    for i, channel in enumerate(request.get("InputDataConfig", [])):
        source = channel.get("DataSource", {}).get("S3DataSource")
        if source:
            s3_uri(f"InputDataConfig[{i}].DataSource.S3DataSource.S3Uri", source.get("S3Uri"))
    s3_uri("OutputDataConfig.S3OutputPath", request.get("OutputDataConfig", {}).get("S3OutputPath"))
    for metric in algo.get("MetricDefinitions", []):
        try:
            re.compile(metric.get("Regex", ""))
        except re.error as exc:
            raise RequestRefused(
                f"MetricDefinitions {metric.get('Name')!r}: Regex is not valid ({exc})."
            ) from exc


def _training(request: dict[str, Any]) -> None:
    _training_definition(request, "HyperParameters")


def _tuning(request: dict[str, Any]) -> None:
    definition = request.get("TrainingJobDefinition")
    if not definition:
        raise RequestRefused("Only tuning jobs with one TrainingJobDefinition run locally.")
    _training_definition(definition, "StaticHyperParameters")
    config = request.get("HyperParameterTuningJobConfig", {})
    ranges = config.get("ParameterRanges", {})
    tuned = [r["Name"] for group in ranges.values() for r in group]
    static = set(definition.get("StaticHyperParameters") or {})
    clash = sorted(static & set(tuned))
    if clash:
        raise RequestRefused(
            f"Hyperparameter(s) {', '.join(clash)} are both static and tuned; the service "
            "refuses the tuning job."
        )
    objective = config.get("HyperParameterTuningJobObjective", {}).get("MetricName")
    names = [m["Name"] for m in definition["AlgorithmSpecification"].get("MetricDefinitions", [])]
    if objective and names and objective not in names:
        raise RequestRefused(
            f"The objective metric {objective!r} is not among the MetricDefinitions "
            f"({', '.join(names)})."
        )


def _register(request: dict[str, Any]) -> None:
    for i, container in enumerate(request.get("InferenceSpecification", {}).get("Containers", [])):
        if "ModelDataUrl" in container:
            s3_uri(
                f"InferenceSpecification.Containers[{i}].ModelDataUrl", container["ModelDataUrl"]
            )
    metrics = request.get("ModelMetrics", {})
    for group, sources in metrics.items():
        for name, source in (sources or {}).items():
            if isinstance(source, dict) and "S3Uri" in source:
                s3_uri(f"ModelMetrics.{group}.{name}.S3Uri", source["S3Uri"])


SERVICE_RULES = {
    "Processing": _processing,
    "Training": _training,
    "Tuning": _tuning,
    "RegisterModel": _register,
}
