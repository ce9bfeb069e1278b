"""The project's names shared across the job boundary: files, channels, arguments, metrics.

The pipeline builder, the job entrypoint, the image tool and the tests import
these; each literal is written here once. SageMaker's own names (the /opt/ml
layout, ``hyperparameters.json``, ``model.tar.gz``) are in ``container.paths``.
A light module (no scientific imports).
"""

from __future__ import annotations

# Re-exported: the resolved config beside every output (defined in ``conf``).
from conf import CONFIG_FILE as CONFIG_FILE

# The image's entrypoint command and the jobs it runs.
ENTRYPOINT = ("python", "-m", "container.entrypoint")
PREPARE, TRAIN, EVALUATE = "prepare", "train", "evaluate"
JOBS = (PREPARE, TRAIN, EVALUATE)

# Processing inputs and outputs, and training channels.
CONFIG_CHANNEL = "config"
MODEL_INPUT = "model"
EVALUATION_OUTPUT = "evaluation"
MODEL_QUALITY_FILE = "model_quality.json"

# How a job gets the start-time values: each of two pipeline parameters reaches
# processing jobs as one ``--flag=<value>`` argument and training jobs as a hyperparameter.
OVERRIDES_PARAMETER = "HydraOverrides"
INPUT_DATA_PARAMETER = "InputDataUri"
OVERRIDES_FLAG = "--overrides"
INPUT_DATA_FLAG = "--input-data-uri"
OVERRIDES_KEY = "overrides"
INPUT_DATA_KEY = "input_data_uri"
JOB_ARGUMENTS = {OVERRIDES_FLAG: OVERRIDES_PARAMETER, INPUT_DATA_FLAG: INPUT_DATA_PARAMETER}
JOB_HYPERPARAMETERS = {OVERRIDES_KEY: OVERRIDES_PARAMETER, INPUT_DATA_KEY: INPUT_DATA_PARAMETER}

# The value of a pipeline parameter (and so of a job argument or hyperparameter)
# that means "not set": SageMaker refuses empty container arguments and empty
# parameter values, so "no overrides" and "the configured data source" travel as this.
UNSET = "none"

SPLITS = ("train", "validation", "test")
SPLIT_FILE = "data.parquet"
MODEL_FILE = "model.skops"
# What models were saved as before the safe format; refused with a message to retrain.
LEGACY_MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
CALIBRATION_FILE = "calibration.png"
LORENZ_FILE = "lorenz.png"

# Regex matching ``metric_line`` for one metric (used by SageMaker metric definitions).
METRIC_REGEX = r"{split}:{name}=([-+0-9.eE]+)"
# What training reports, per split: the metric lines tuning can optimise.
TRAINING_METRICS = {
    "train": ("poisson_deviance",),
    "validation": ("poisson_deviance", "d2", "gini"),
}
METRIC_NAMES = tuple(
    f"{split}:{name}" for split, names in TRAINING_METRICS.items() for name in names
)


def metric_line(split: str, name: str, value: float) -> str:
    """One metric in the fixed form SageMaker metric definitions scrape."""
    return f"{split}:{name}={value:.6f}"


def unset_to_empty(value: str | None) -> str:
    """A job argument as the job uses it: ``UNSET`` (or nothing) is the empty string."""
    text = (value or "").strip()
    return "" if text == UNSET else text


def input_data_overrides(uri: str) -> list[str]:
    """The overrides a job applies for its ``InputDataUri`` (``none`` or empty: none).

    A data set given at start is read as a file source: ``data=file data.path=<uri>``.
    """
    uri = unset_to_empty(uri)
    return ["data=file", f"data.path={uri}"] if uri else []


# Serving: what the model server accepts and answers. The registered model
# package declares exactly these, so the registry never claims more.
CSV_TYPE = "text/csv"
JSON_TYPE = "application/json"
PARQUET_TYPE = "application/x-parquet"
REQUEST_CONTENT_TYPES = (CSV_TYPE, JSON_TYPE, PARQUET_TYPE)
RESPONSE_CONTENT_TYPES = (JSON_TYPE, CSV_TYPE)
