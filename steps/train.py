"""Train step: fit the configured model, print metric lines, save the model."""

from __future__ import annotations

import logging
from pathlib import Path

import joblib
import pandas as pd
from omegaconf import DictConfig

from steps.contract import MODEL_FILE, TRAINING_METRICS, metric_line
from steps.errors import DataError
from steps.io import read_split, staged_outputs
from steps.metrics import scores
from steps.model import FrequencyModel, exposure, fit
from steps.progress import progress

log = logging.getLogger(__name__)


def report(split: str, values: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    """Print metric lines for ``names`` and return them keyed as ``split:name``."""
    out = {}
    for name in names:
        line = metric_line(split, name, values[name])
        print(line, flush=True)
        out[line.split("=", 1)[0]] = values[name]
    return out


def score_split(model: FrequencyModel, cfg: DictConfig, df: pd.DataFrame) -> dict[str, float]:
    """Metrics of a fitted model on one split."""
    return scores(df[cfg.data.target].to_numpy(float), exposure(df, cfg.data), model.predict(df))


def train(
    cfg: DictConfig, train_dir: Path, validation_dir: Path, model_dir: Path
) -> dict[str, float]:
    """Fit on the train split (early stopping on validation) and write ``model.joblib``.

    Returns the metric values keyed as they are printed (``validation:poisson_deviance``).
    """
    train_df, validation_df = read_split(train_dir), read_split(validation_dir)
    with progress(f"Fitting {cfg.model.name} on {len(train_df)} rows"):
        model = fit(cfg.model, cfg.data, train_df, validation_df)
    log.info("Fitted %s: %s", cfg.model.name, model.params)
    frames = {"train": train_df, "validation": validation_df}
    metrics: dict[str, float] = {}
    for split, names in TRAINING_METRICS.items():
        metrics |= report(split, score_split(model, cfg, frames[split]), names)
    with staged_outputs(Path(model_dir)) as stage:
        joblib.dump(model, stage / MODEL_FILE)
    return metrics


def load_model(model_dir: Path) -> FrequencyModel:
    """Load the model the train step wrote (a SageMaker model.tar.gz already unpacked)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise DataError(f"No trained model at '{path}': run the train step first.")
    return joblib.load(path)
