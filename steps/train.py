"""Train step: fit the configured model, print metric lines, save the model."""

from __future__ import annotations

import logging
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from steps.contract import MODEL_FILE, TRAINING_METRICS, metric_line
from steps.errors import DataError
from steps.io import read_split, staged_outputs
from steps.metrics import scores
from steps.model import Fit, FrequencyModel, exposure, fit
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


def split_metrics(
    cfg: DictConfig, df: pd.DataFrame, predicted: np.ndarray, baseline: float
) -> dict[str, float]:
    """Model metrics on one split, with the constant baseline and, if known, the truth."""
    claims, expo = df[cfg.data.target].to_numpy(float), exposure(df, cfg.data)
    out = scores(claims, expo, predicted)
    out["baseline_poisson_deviance"] = poisson_deviance(claims, expo, np.full(len(df), baseline))
    truth = cfg.data.true_frequency
    if truth and truth in df:
        best = scores(claims, expo, df[truth].to_numpy(float))
        out["best_poisson_deviance"] = best["poisson_deviance"]
        out["best_d2"] = best["d2"]
        out["d2_ratio"] = out["d2"] / best["d2"] if best["d2"] > 0 else float("nan")
    return out


def poisson_deviance(claims: np.ndarray, expo: np.ndarray, predicted: np.ndarray) -> float:
    """Exposure-weighted mean Poisson deviance of predicted frequencies."""
    from sklearn.metrics import mean_poisson_deviance

    return float(mean_poisson_deviance(claims / expo, predicted, sample_weight=expo))


def training_metrics(cfg: DictConfig, fitted: Fit, validation: pd.DataFrame) -> dict[str, float]:
    """Score the splits training reports, predicting each at most once.

    The validation metrics are kept in the model (the evaluate step reuses
    them); the train deviance comes from the fit itself where the model
    tracked it.
    """
    model = fitted.model
    assert fitted.validation is not None
    predicted = model.predict_features(fitted.validation[0])
    model.metrics["validation"] = split_metrics(
        cfg, validation, predicted, model.train_mean_frequency
    )
    values: dict[str, dict[str, float]] = {"validation": model.metrics["validation"]}
    if set(TRAINING_METRICS["train"]) == {"poisson_deviance"} and fitted.train_deviance is not None:
        values["train"] = {"poisson_deviance": fitted.train_deviance}
    else:
        x, y, w = fitted.train
        values["train"] = scores(y * w, w, model.predict_features(x))
    metrics: dict[str, float] = {}
    for split, names in TRAINING_METRICS.items():
        metrics |= report(split, values[split], names)
    return metrics


def train(
    cfg: DictConfig, train_dir: Path, validation_dir: Path, model_dir: Path
) -> dict[str, float]:
    """Fit on the train split (early stopping on validation) and write ``model.joblib``.

    Returns the metric values keyed as they are printed (``validation:poisson_deviance``).
    """
    train_df, validation_df = read_split(train_dir), read_split(validation_dir)
    with progress(f"Fitting {cfg.model.name} on {len(train_df)} rows"):
        fitted = fit(cfg.model, cfg.data, train_df, validation_df)
    log.info("Fitted %s: %s", cfg.model.name, fitted.model.params)
    metrics = training_metrics(cfg, fitted, validation_df)
    with staged_outputs(Path(model_dir)) as stage:
        joblib.dump(fitted.model, stage / MODEL_FILE)
    return metrics


def load_model(model_dir: Path) -> FrequencyModel:
    """Load the model the train step wrote (a SageMaker model.tar.gz already unpacked)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise DataError(f"No trained model at '{path}': run the train step first.")
    return joblib.load(path)
