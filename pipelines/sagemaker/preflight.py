"""Check the parameters of a pipeline start before anything runs, as the service would.

``check_start`` takes the pipeline's definition, the ``--param Name=Value``
values a user gives and the pipeline's config channel, and either returns the
exact values to send to StartPipelineExecution or raises a ``ConfigError``
that names the parameter, the key or the limit. The same checks serve
``make start-pipeline``, the retraining schedule and ``make local-pipeline``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf.channel import compose_from_channel, parse_overrides
from conf.contract import (
    CONFIG_CHANNEL,
    CONFIG_FILE,
    INPUT_DATA_PARAMETER,
    OVERRIDES_PARAMETER,
    UNSET,
    input_data_overrides,
)
from conf.errors import ConfigError, require_complete
from conf.runtime import StartOverrideError, check_start_overrides
from executor import ParameterError, check_step
from executor import check_parameters as service_parameters
from executor import service_rules as rules

OVERRIDES_PARAM = OVERRIDES_PARAMETER
INPUT_DATA_PARAM = INPUT_DATA_PARAMETER
# Request fields whose items or values a parameter may reach, with their limit.
_LIMITED_FIELDS = {
    "Processing": (
        ("AppSpecification", "ContainerEntrypoint"),
        ("AppSpecification", "ContainerArguments"),
    ),
    "Training": (("HyperParameters",),),
    "Tuning": (("TrainingJobDefinition", "StaticHyperParameters"),),
}


def check_start(
    definition: Mapping[str, Any],
    params: Mapping[str, str],
    channel: Path | None,
    *,
    allow_any_input: bool = False,
) -> dict[str, str]:
    """The parameter values to start ``definition`` with; a ``ConfigError`` if one is refused.

    An empty value clears a parameter whose "not set" value is ``none``
    (``HydraOverrides``, ``InputDataUri``): it is sent as ``none``. Any other
    empty value is refused, as the service refuses it. ``channel`` is a local
    copy of the config channel the pipeline was upserted with (None: skip the
    config checks).
    """
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    # An empty value clears a parameter whose "not set" value is ``none``.
    clearable = {name for name, p in declared.items() if p.get("DefaultValue") == UNSET}
    values = {
        name: UNSET if value == "" and name in clearable else value
        for name, value in params.items()
    }
    try:  # what the service refuses: unknown names, empty values, types, enum values
        service_parameters(dict(definition), values)
    except ParameterError as err:
        raise ConfigError(str(err)) from None
    effective = {name: values.get(name, p.get("DefaultValue")) for name, p in declared.items()}
    _check_requests(definition, effective)
    if channel is not None:
        upserted = OmegaConf.load(Path(channel) / CONFIG_FILE)
        assert isinstance(upserted, DictConfig)  # a composed config is a mapping
        uri = str(effective.get(INPUT_DATA_PARAM) or UNSET)
        _check_input_location(upserted, uri, allow_any_input)
        _check_overrides(channel, upserted, str(effective.get(OVERRIDES_PARAM) or UNSET), uri)
    return values


def config_channel_uri(definition: Mapping[str, Any]) -> str:
    """The S3 URI of the config channel a definition's jobs read."""
    for step in rules.job_steps(definition):
        for item in step.get("Arguments", {}).get("ProcessingInputs", []):
            uri = item.get("S3Input", {}).get("S3Uri")
            if item.get("InputName") == CONFIG_CHANNEL and isinstance(uri, str):
                return uri
    raise ConfigError(
        "The pipeline's definition has no 'config' processing input: it was not built by this "
        "project's builder. Run `make upsert-pipeline` first."
    )


def parameter_limits(
    definition: Mapping[str, Any], values: Mapping[str, Any]
) -> dict[str, tuple[int, str]]:
    """Per parameter, the longest value every place it reaches allows, and that place.

    A value joined into a container argument shares the argument's 256
    characters with the rest of it (``--overrides=`` ...).
    """
    limits = {name: (rules.PARAMETER_VALUE_MAX, "a pipeline parameter value") for name in values}
    for step, field, raw in _limited_items(definition):
        for name in _referenced(raw):
            if name not in values:
                continue
            rest = len(str(rules.resolve(raw, {**values, name: ""})))
            cap = _field_limit(step["Type"]) - rest
            if cap < limits[name][0]:
                limits[name] = (cap, f"step {step['Name']}'s {field}")
    return limits


# ----------------------------------------------------------------------------- checks


def _check_requests(definition: Mapping[str, Any], effective: Mapping[str, Any]) -> None:
    for name, (cap, where) in parameter_limits(definition, effective).items():
        value = str(effective[name])
        if len(value) > cap:
            raise ConfigError(
                f"--param {name} is {len(value)} characters; it reaches {where}, which allows "
                f"{cap} characters for it. Shorten it (for longer overrides, upsert them into "
                "the pipeline's config instead)."
            )
    # One mechanism for every start-time rule (enums, instance types, lengths, KMS on
    # instance storage...): each job's request resolved with the start values, then the
    # executor's checks of that request.
    for step in rules.job_steps(definition):
        problems = check_step(step, effective)
        if problems:
            raise ConfigError(
                f"With these parameters the service would refuse step {step['Name']}: "
                + "; ".join(problems)
                + "."
            )


def _check_input_location(upserted: DictConfig, uri: str, allow_any: bool) -> None:
    if uri == UNSET:
        return
    if not uri.startswith("s3://"):
        raise ConfigError(
            f"--param {INPUT_DATA_PARAM}={uri!r} must be an s3:// URI: the jobs run in "
            "SageMaker and read the data set from S3."
        )
    sm = upserted.sagemaker
    readable = f"s3://{sm.bucket}/{sm.prefix}/"
    if not allow_any and not uri.startswith(readable):
        raise ConfigError(
            f"--param {INPUT_DATA_PARAM}={uri!r} is outside {readable}, the only data location "
            "the pipeline's execution role may read. Copy the file there (aws s3 cp FILE "
            f"{readable}input/), or pass --allow-any-input if you granted the role more."
        )


def _check_overrides(channel: Path, upserted: DictConfig, text: str, uri: str) -> None:
    try:
        overrides = parse_overrides("" if text == UNSET else text)
    except ValueError as exc:
        raise ConfigError(f"--param {OVERRIDES_PARAM}={text!r} cannot be parsed: {exc}.") from None
    try:
        check_start_overrides(upserted, overrides)
    except StartOverrideError as exc:
        raise ConfigError(f"--param {OVERRIDES_PARAM}: {exc}") from None
    runtime = input_data_overrides("" if uri == UNSET else uri) + overrides
    try:
        cfg = compose_from_channel(Path(channel), runtime)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(
            f"--param {OVERRIDES_PARAM}={text!r} does not compose with the pipeline's config: "
            f"{reason}"
        ) from None
    require_complete(cfg)


# ---------------------------------------------------------------------------- helpers


def _limited_items(definition: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], str, Any]]:
    """(step, field name, raw item) for each item of a field with a per-item limit."""
    for step in rules.job_steps(definition):
        for path in _LIMITED_FIELDS.get(step.get("Type", ""), ()):
            node: Any = step.get("Arguments", {})
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            items: Iterable[tuple[Any, Any]] = (
                node.items() if isinstance(node, dict) else enumerate(node or [])
            )
            for key, raw in items:
                yield step, f"{'.'.join(path)}[{key!r}]", raw


def _field_limit(step_type: str) -> int:
    if step_type == "Processing":
        return rules.CONTAINER_ITEM_MAX
    return rules.HYPERPARAMETER_MAX


def _referenced(raw: Any) -> set[str]:
    """Names of the parameters an expression reads."""
    if isinstance(raw, dict):
        if len(raw) == 1 and str(raw.get("Get", "")).startswith("Parameters."):
            return {str(raw["Get"]).removeprefix("Parameters.")}
        return set().union(*(_referenced(v) for v in raw.values())) if raw else set()
    if isinstance(raw, list):
        return set().union(*(_referenced(v) for v in raw)) if raw else set()
    return set()
