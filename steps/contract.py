"""Names the steps share with whatever runs them: file names and metric lines.

A light module (no scientific imports), so the pipeline builder and the job
entrypoint can use the same names without loading pandas or scikit-learn.
"""

from __future__ import annotations

# The value of a pipeline parameter (and so of a job argument or hyperparameter)
# that means "not set": SageMaker refuses empty container arguments and empty
# parameter values, so "no overrides" and "the configured data source" travel as this.
UNSET = "none"

SPLITS = ("train", "validation", "test")
SPLIT_FILE = "data.parquet"
MODEL_FILE = "model.skops"
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
