"""The project's names shared across the job boundary: files, channels, arguments, metrics.

The pipeline builder, the job entrypoint, the image tool and the tests import
these; each literal is written here once, SageMaker's /opt/ml layout included
(``OptMl``: its root comes from ``OPT_ML_ROOT``, default ``/opt/ml``, so the same
layout can be built in a temporary folder for tests and local image runs).
A light module (standard library only): every layer but the executor may import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The resolved config a run or a job saves beside its outputs (and the channel holds).
CONFIG_FILE = "config.yaml"

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

# What a training job runs. The platform starts every training job with the single
# argument `train`; the hyperparameter MODE_KEY picks the work: absent, the pipeline's
# training step (fit on its channels); RUN_MODE, a whole run in one job (load,
# validate, split, train, evaluate: `make cloud-run`).
MODE_KEY = "mode"
RUN_MODE = "run"

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


# ------------------------------------------------------------ the /opt/ml layout

DEFAULT_ROOT = "/opt/ml"
MODEL_ARCHIVE = "model.tar.gz"
HYPERPARAMETERS_FILE = "hyperparameters.json"


@dataclass(frozen=True)
class OptMl:
    """Every path a job reads or writes, under one root."""

    root: Path

    @classmethod
    def from_env(cls) -> OptMl:
        """The layout under ``$OPT_ML_ROOT`` (or ``/opt/ml``)."""
        return cls(Path(os.environ.get("OPT_ML_ROOT") or DEFAULT_ROOT))

    # Training jobs ---------------------------------------------------------------
    @property
    def hyperparameters(self) -> Path:
        return self.root / "input" / "config" / HYPERPARAMETERS_FILE

    def channel(self, name: str) -> Path:
        """A training job input channel: ``input/data/<name>``."""
        return self.root / "input" / "data" / name

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output_data(self) -> Path:
        """What a training job leaves besides its model (packed as ``output.tar.gz``)."""
        return self.root / "output" / "data"

    # Processing jobs -------------------------------------------------------------
    def processing_input(self, name: str) -> Path:
        return self.root / "processing" / "input" / name

    def processing_output(self, name: str) -> Path:
        return self.root / "processing" / "output" / name

    @property
    def processing_outputs(self) -> Path:
        return self.root / "processing" / "output"

    # Both ------------------------------------------------------------------------
    @property
    def failure(self) -> Path:
        """Training jobs report this file's text as the FailureReason."""
        return self.root / "output" / "failure"

    @property
    def message(self) -> Path:
        """Processing jobs report this file's text as the ExitMessage."""
        return self.root / "output" / "message"


# The layout a job sees inside SageMaker, for code that writes job requests.
JOB = OptMl(Path(DEFAULT_ROOT))
