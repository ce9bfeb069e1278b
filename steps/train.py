"""Train step: fit the configured model, print metric lines, save the model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from omegaconf import DictConfig

from conf.contract import LEGACY_MODEL_FILE, MODEL_FILE, TRAINING_METRICS, metric_line
from conf.errors import DataError
from steps.checks import check_config
from steps.metrics import scores
from steps.model import Fit, FrequencyModel, exposure, fit
from steps.runtime.io import read_split, staged_outputs
from steps.runtime.progress import progress
from steps.validate import validate

log = logging.getLogger(__name__)
# What a model file may contain besides plain data, numpy arrays and scikit-learn's
# estimators (which skops trusts by default). Loading refuses anything else, so a
# crafted file cannot run code.
TRUSTED_TYPES = [
    "steps.model.FrequencyModel",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "functools.partial",
    "sklearn.utils.validation.check_array",
]
# The pickle-based file of earlier versions: never loaded, named in the error.


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
    """Fit on the train split (early stopping on validation) and write ``model.skops``.

    The config is checked and both splits are validated again first (a job's input
    channels may hold anything). Returns the metric values keyed as they are printed
    (``validation:poisson_deviance``).
    """
    check_config(cfg)
    train_df = read_input(train_dir, cfg, "train")
    validation_df = read_input(validation_dir, cfg, "validation")
    with progress(f"Fitting {cfg.model.name} on {len(train_df)} rows"):
        fitted = fit(cfg.model, cfg.data, train_df, validation_df)
    log.info("Fitted %s: %s", cfg.model.name, fitted.model.params)
    metrics = training_metrics(cfg, fitted, validation_df)
    with staged_outputs(Path(model_dir)) as stage:
        save_model(fitted.model, stage / MODEL_FILE)
    return metrics


def read_input(folder: Path, cfg: DictConfig, split: str) -> pd.DataFrame:
    """A split folder, validated with the same rules as the prepare step."""
    df = read_split(folder)
    try:
        return validate(df, cfg.data)
    except DataError as err:
        raise DataError(f"The {split} split in '{folder}' is not usable: {err}") from None


def save_model(model: FrequencyModel, path: Path) -> None:
    """Write the model in the skops format (loaded without running code)."""
    sio.dump(model, path)


def load_model(model_dir: Path) -> FrequencyModel:
    """Load the model the train step wrote (a SageMaker model.tar.gz already unpacked).

    Only the types in ``TRUSTED_TYPES`` (and skops' defaults) are accepted.
    """
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        if (Path(model_dir) / LEGACY_MODEL_FILE).is_file():
            raise DataError(
                f"'{Path(model_dir) / LEGACY_MODEL_FILE}' was saved by an earlier version as a "
                "pickle, which is not loaded because unpickling can run arbitrary code. "
                f"Retrain to get a {MODEL_FILE}: make local-run, or run the pipeline again."
            )
        raise DataError(f"No trained model at '{path}': run the train step first.")
    try:
        model = sio.load(path, trusted=TRUSTED_TYPES)
    except sio.exceptions.UntrustedTypesFoundException as err:
        raise DataError(
            f"The model file '{path}' holds types that are not trusted ({err}): it was not "
            "written by this project's train step, so it is not loaded."
        ) from None
    except Exception as err:
        raise DataError(
            f"Cannot read the model file '{path}' ({type(err).__name__}: "
            f"{' '.join(str(err).split())}): retrain, or pass the train step's output."
        ) from None
    if not isinstance(model, FrequencyModel):
        raise DataError(
            f"The model file '{path}' holds a {type(model).__name__}, not a model of this project."
        )
    return model
