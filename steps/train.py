"""Train step: fit the configured model, print metric lines, save the model."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import skops.io as sio
from omegaconf import DictConfig

from steps.checks import check_config
from steps.contract import MODEL_FILE, TRAINING_METRICS, metric_line
from steps.errors import DataError
from steps.io import read_split, staged_outputs
from steps.metrics import scores
from steps.model import FrequencyModel, exposure, fit
from steps.progress import progress
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
LEGACY_MODEL_FILE = "model.joblib"


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
    """Fit on the train split (early stopping on validation) and write ``model.skops``.

    The config is checked and both splits are validated again first (a job's input
    channels may hold anything). Returns the metric values keyed as they are printed
    (``validation:poisson_deviance``).
    """
    check_config(cfg)
    train_df = read_input(train_dir, cfg, "train")
    validation_df = read_input(validation_dir, cfg, "validation")
    with progress(f"Fitting {cfg.model.name} on {len(train_df)} rows"):
        model = fit(cfg.model, cfg.data, train_df, validation_df)
    log.info("Fitted %s: %s", cfg.model.name, model.params)
    frames = {"train": train_df, "validation": validation_df}
    metrics: dict[str, float] = {}
    for split, names in TRAINING_METRICS.items():
        metrics |= report(split, score_split(model, cfg, frames[split]), names)
    with staged_outputs(Path(model_dir)) as stage:
        save_model(model, stage / MODEL_FILE)
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
