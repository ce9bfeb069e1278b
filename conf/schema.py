"""Structured schema for the config tree: the types of every key.

Values, defaults included, live in the YAML files only; these dataclasses give
their types (``MISSING``: the YAML sets it), so an unknown key or a value of
the wrong type in an override fails at compose time with a message that names
the key. Choice-valued keys are enums. ``tests/test_conf.py`` fails when a
dataclass and its YAML drift apart. Model schemas live with their model in
``steps/models/`` (see ``schemas``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

# Schema nodes are stored under this group, which no user picks from, so the
# options Hydra lists for `model=` or `data=` are the YAML files alone.
SCHEMA_GROUP = "schema"
# The groups whose options each have a schema of their own, stored by their units.
OPTION_GROUPS = ("data", "model")

# ----------------------------------------------------------------------------- data


@dataclass
class DataConfig:
    """Columns shared by every data source."""

    source: str = MISSING  # the key of `schemas()["data"]`, set by each schema below
    name: str = MISSING
    target: str = MISSING
    exposure: str | None = MISSING  # null: every row has exposure 1
    categorical: list[str] = MISSING
    numeric: list[str] = MISSING
    id_column: str | None = MISSING
    # Column holding the true frequency (synthetic data only): never a feature,
    # used to report the best achievable deviance.
    true_frequency: str | None = MISSING
    # Largest exposure a row may have (null: no upper bound; freMTPL2freq has rows above 1).
    max_exposure: float | None = MISSING


@dataclass
class SyntheticDataConfig(DataConfig):
    source: str = "synthetic"
    n_rows: int = MISSING
    seed: int = MISSING


@dataclass
class OpenMLDataConfig(DataConfig):
    source: str = "openml"
    dataset_id: int = MISSING
    cache_dir: str = MISSING


@dataclass
class FileDataConfig(DataConfig):
    source: str = "file"
    path: str = MISSING  # local path or s3:// URI, .csv or .parquet
    format: str | None = MISSING  # csv | parquet (any case); null: from the suffix


# ---------------------------------------------------------------------------- model


@dataclass
class ModelConfig:
    """Base of every model's schema (each lives with its model in ``steps/models/``)."""

    name: str = MISSING


# ------------------------------------------------------------------------ the rest


@dataclass
class SplitConfig:
    validation_fraction: float = MISSING
    test_fraction: float = MISSING
    seed: int = MISSING


@dataclass
class EvaluationConfig:
    calibration_bins: int = MISSING
    lorenz_points: int = MISSING


class ParameterType(StrEnum):
    integer = "integer"
    continuous = "continuous"
    categorical = "categorical"


class Scaling(StrEnum):
    Auto = "Auto"
    Linear = "Linear"
    Logarithmic = "Logarithmic"
    ReverseLogarithmic = "ReverseLogarithmic"


class ObjectiveType(StrEnum):
    Minimize = "Minimize"
    Maximize = "Maximize"


class Strategy(StrEnum):
    Bayesian = "Bayesian"
    Random = "Random"


class EarlyStopping(StrEnum):
    Off = "Off"
    Auto = "Auto"


class PipelineMode(StrEnum):
    train = "train"
    tune = "tune"


@dataclass
class ParameterRange:
    """One hyperparameter range; names are keys of the ``model`` group.

    The only schema with defaults: a range states just the keys it needs.
    """

    type: ParameterType = MISSING
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    scaling: Scaling = Scaling.Auto


@dataclass
class TuningConfig:
    """Search space, objective and budget, read by local and SageMaker tuning alike."""

    objective_metric: str = MISSING
    objective_type: ObjectiveType = MISSING
    strategy: Strategy = MISSING
    max_jobs: int = MISSING
    max_parallel_jobs: int = MISSING
    # One rule for local and SageMaker tuning: an integer seeds the search, null does not.
    seed: int | None = MISSING
    parameters: dict[str, ParameterRange] = MISSING
    # SageMaker stops training jobs that are unlikely to beat the best (Auto) or not (Off).
    early_stopping: EarlyStopping = MISSING
    # Completion criterion: the search ends once the objective reaches this value (null: none).
    target_objective: float | None = MISSING
    # Tuning jobs whose results seed this search (a warm start; empty: none).
    warm_start_from: list[str] = MISSING


@dataclass
class SageMakerConfig:
    """Where the pipeline runs: account-specific names and instance choices."""

    region: str | None = MISSING
    role_arn: str | None = MISSING
    bucket: str | None = MISSING
    config_bucket: str | None = MISSING  # null: the data bucket
    prefix: str = MISSING
    image_uri: str | None = MISSING
    ecr_repository: str = MISSING
    model_package_group: str = MISSING
    kms_key_id: str | None = MISSING
    processing_instance_type: str = MISSING
    training_instance_type: str = MISSING
    instance_count: int = MISSING
    volume_size_gb: int = MISSING
    max_runtime_seconds: int = MISSING
    tags: dict[str, str] = MISSING
    # Cloud runs (`make cloud-run`): managed spot training, how long it may wait for
    # spot capacity (null: twice max_runtime_seconds), and a warm pool kept after
    # each job (seconds; 0: none; not with spot).
    spot: bool = MISSING
    max_wait_seconds: int | None = MISSING
    keep_alive_seconds: int = MISSING


@dataclass
class PipelineConfig:
    """Shape of the SageMaker Pipeline: train or tune, gate and registration."""

    mode: PipelineMode = MISSING
    name: str = MISSING
    # Quality gate: the test Poisson deviance must not exceed this threshold
    # and must not be worse than the constant baseline.
    max_test_deviance: float = MISSING
    approval_status: str = MISSING
    cache_prepare: bool = MISSING
    cache_expire_after: str = MISSING
    retry_attempts: int = MISSING
    # Hydra overrides applied by every job on top of the uploaded config.
    overrides: str = MISSING


@dataclass
class ScheduleConfig:
    """Scheduled retraining with EventBridge Scheduler."""

    name: str = MISSING
    expression: str = MISSING
    timezone: str = MISSING
    enabled: bool = MISSING
    role_arn: str | None = MISSING
    # Pipeline parameters the scheduled execution starts with.
    parameters: dict[str, str] = MISSING


class DeployMode(StrEnum):
    realtime = "realtime"
    serverless = "serverless"


@dataclass
class DeployConfig:
    """Where ``make deploy-model`` serves the latest Approved model package."""

    endpoint_name: str = MISSING
    mode: DeployMode = MISSING
    variant_name: str = MISSING
    instance_type: str = MISSING
    instance_count: int = MISSING
    serverless_memory_mb: int = MISSING
    serverless_max_concurrency: int = MISSING
    model_server_workers: int | None = MISSING
    model_server_timeout: int = MISSING
    inference_instance_types: list[str] = MISSING
    transform_instance_types: list[str] = MISSING


@dataclass
class Config:
    data: Any = MISSING
    model: Any = MISSING
    split: SplitConfig = MISSING
    evaluation: EvaluationConfig = MISSING
    tuning: TuningConfig = MISSING
    sagemaker: SageMakerConfig = MISSING
    pipeline: PipelineConfig = MISSING
    schedule: ScheduleConfig = MISSING
    deploy: DeployConfig = MISSING
    seed: int = MISSING


def schemas() -> dict[str, dict[str, type]]:
    """Schema per option of the groups whose options differ: ``data`` and ``model``.

    Read back from Hydra's ConfigStore, where the model and data source units
    stored them (``register_option``).
    """
    cs = ConfigStore.instance()
    out: dict[str, dict[str, type]] = {}
    for group in OPTION_GROUPS:
        names = cs.list(f"{SCHEMA_GROUP}/{group}") if _has_group(cs, group) else []
        out[group] = {}
        for file in names:
            name = file.removesuffix(".yaml")
            node = cs.load(f"{SCHEMA_GROUP}/{group}/{file}").node
            out[group][name] = OmegaConf.get_type(node)  # type: ignore[assignment]
    return out


def _has_group(cs: ConfigStore, group: str) -> bool:
    try:
        return group in cs.list(SCHEMA_GROUP)
    except OSError:
        return False


def register_option(group: str, name: str, schema: type) -> None:
    """Store one ``data`` or ``model`` option's schema under ``schema/<group>/<name>``.

    A unit (a model or a data source) calls this for itself; a model's ``name``
    is its registry key, set here rather than in its YAML.
    """
    if group not in OPTION_GROUPS:
        raise ValueError(f"schemas are registered for {OPTION_GROUPS}, not {group!r}")
    node = OmegaConf.structured(schema)
    if group == "model":
        node.name = name
    ConfigStore.instance().store(group=f"{SCHEMA_GROUP}/{group}", name=name, node=node)


def register_configs() -> None:
    """Put the root schema into Hydra's ConfigStore under ``schema/`` (idempotent).

    ``config.yaml`` names ``/schema/config`` first; a ``data`` or ``model``
    option's YAML names its own, e.g. ``- /schema/model/hgb_poisson@_here_``,
    which its unit stores with ``register_option``.
    """
    ConfigStore.instance().store(group=SCHEMA_GROUP, name="config", node=Config)
