"""Structured schema for the config tree.

Every group option in ``conf/`` is validated against one of these dataclasses,
so an unknown key or a value of the wrong type in an override fails at compose
time with a message that names the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# ----------------------------------------------------------------------------- data


@dataclass
class DataConfig:
    """Columns shared by every data source."""

    source: str = MISSING  # synthetic | openml | file
    name: str = MISSING
    target: str = "ClaimNb"
    exposure: str | None = "Exposure"  # None: every row has exposure 1
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    id_column: str | None = None
    # Column holding the true frequency (synthetic data only): never a feature,
    # used to report the best achievable deviance.
    true_frequency: str | None = None
    # Largest exposure a row may have (None: no upper bound; freMTPL2freq has rows above 1).
    max_exposure: float | None = None


@dataclass
class SyntheticDataConfig(DataConfig):
    source: str = "synthetic"
    n_rows: int = 678_013
    seed: int = 0


@dataclass
class OpenMLDataConfig(DataConfig):
    source: str = "openml"
    dataset_id: int = 41214
    cache_dir: str = ".cache/openml"


@dataclass
class FileDataConfig(DataConfig):
    source: str = "file"
    path: str = MISSING  # local path or s3:// URI, .csv or .parquet
    format: str | None = None  # csv | parquet (any case); None: from the suffix


# ---------------------------------------------------------------------------- model


@dataclass
class ModelConfig:
    name: str = MISSING


@dataclass
class HGBPoissonConfig(ModelConfig):
    name: str = "hgb_poisson"
    learning_rate: float = 0.1
    max_iter: int = 500
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    l2_regularization: float = 0.0
    max_bins: int = 255
    early_stopping: bool = True
    n_iter_no_change: int = 10
    random_state: int = 0


@dataclass
class GLMPoissonConfig(ModelConfig):
    name: str = "glm_poisson"
    alpha: float = 1e-4
    max_iter: int = 300
    # Numeric columns are cut into quantile bins and one-hot encoded, so the GLM
    # can follow non-linear effects; categorical columns are one-hot encoded.
    n_bins: int = 10


@dataclass
class ConstantConfig(ModelConfig):
    name: str = "constant"


# ------------------------------------------------------------------------ the rest


@dataclass
class SplitConfig:
    validation_fraction: float = 0.15
    test_fraction: float = 0.2
    seed: int = 42


@dataclass
class EvaluationConfig:
    calibration_bins: int = 20
    lorenz_points: int = 200


PARAMETER_TYPES = ("integer", "continuous", "categorical")
SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")


@dataclass
class ParameterRange:
    """One hyperparameter range; names are keys of the ``model`` group."""

    type: str = MISSING  # integer | continuous | categorical
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    scaling: str = "Auto"  # Auto | Linear | Logarithmic | ReverseLogarithmic


@dataclass
class TuningConfig:
    """Search space, objective and budget, read by local and SageMaker tuning alike."""

    objective_metric: str = "validation:poisson_deviance"
    objective_type: str = "Minimize"  # Minimize | Maximize
    strategy: str = "Bayesian"  # Bayesian | Random
    max_jobs: int = 12
    max_parallel_jobs: int = 2
    # One rule for local and SageMaker tuning: an integer seeds the search, null does not.
    seed: int | None = 0
    parameters: dict[str, ParameterRange] = field(default_factory=dict)


@dataclass
class SageMakerConfig:
    """Where the pipeline runs: account-specific names and instance choices."""

    region: str | None = None
    role_arn: str | None = None
    bucket: str | None = None
    config_bucket: str | None = None  # None: the data bucket
    prefix: str = "claim-frequency"
    image_uri: str | None = None
    ecr_repository: str = "claim-frequency"
    model_package_group: str = "claim-frequency"
    kms_key_id: str | None = None
    processing_instance_type: str = "ml.m5.xlarge"
    training_instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_seconds: int = 3600
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    """Shape of the SageMaker Pipeline: train or tune, gate and registration."""

    mode: str = "train"  # train | tune
    name: str = "claim-frequency"
    # Quality gate: the test Poisson deviance must not exceed this threshold
    # and must not be worse than the constant baseline.
    max_test_deviance: float = 1.0
    approval_status: str = "PendingManualApproval"
    cache_prepare: bool = False
    cache_expire_after: str = "P30D"
    retry_attempts: int = 3
    # Hydra overrides applied by every job on top of the uploaded config.
    overrides: str = ""


@dataclass
class ScheduleConfig:
    """Scheduled retraining with EventBridge Scheduler."""

    name: str = "claim-frequency-retrain"
    expression: str = "cron(0 3 ? * MON *)"
    timezone: str = "UTC"
    enabled: bool = True
    role_arn: str | None = None
    # Pipeline parameters the scheduled execution starts with.
    parameters: dict[str, str] = field(default_factory=dict)


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
    seed: int = 42


SCHEMAS: dict[str, dict[str, type]] = {
    "data": {
        "synthetic": SyntheticDataConfig,
        "openml": OpenMLDataConfig,
        "file": FileDataConfig,
    },
    "model": {
        "hgb_poisson": HGBPoissonConfig,
        "glm_poisson": GLMPoissonConfig,
        "constant": ConstantConfig,
    },
}


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, options in SCHEMAS.items():
        for name, node in options.items():
            cs.store(group=group, name=f"{name}_schema", node=node)
