"""Feature preprocessing, fitting any registered model, and the fitted model's record."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from conf.errors import ConfigError
from steps.models import MODELS, ModelUnit

log = logging.getLogger(__name__)


def exposure(df: pd.DataFrame, data: DictConfig) -> np.ndarray:
    """Exposure per row; 1 when the data set has no exposure column."""
    if not data.exposure:
        return np.ones(len(df))
    return df[data.exposure].to_numpy(float)


def frequency(df: pd.DataFrame, data: DictConfig) -> np.ndarray:
    """Observed claims per unit of exposure: the regression target."""
    return df[data.target].to_numpy(float) / exposure(df, data)


# The level that stands for every rare (or unseen) category of a grouped column.
OTHER = "__other__"


def features(
    df: pd.DataFrame,
    categorical: list[str],
    numeric: list[str],
    levels: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """The model's input columns: categories as ``category`` dtype of strings, numbers as floats.

    Columns that already have these types (the prepare step writes them so) are
    kept as they are, so a split costs nothing to convert. For a column in
    ``levels``, values not among its kept levels become ``OTHER``.
    """
    out = {}
    for col in categorical:
        values = df[col]
        if levels and col in levels:
            values = values.astype(str)
            values = values.where(values.isin(levels[col]), OTHER).astype("category")
        elif not (
            isinstance(values.dtype, pd.CategoricalDtype)
            and pd.api.types.is_string_dtype(values.dtype.categories)
        ):
            values = values.astype(str).astype("category")
        out[col] = values
    for col in numeric:
        out[col] = df[col].astype(float, copy=False)
    return pd.DataFrame(out, index=df.index)


def unit(model: DictConfig) -> ModelUnit:
    """The registered model unit for the composed ``model`` config."""
    if model.name not in MODELS:
        known = ", ".join(f"model={name}" for name in MODELS)
        raise ConfigError(f"Unknown model.name '{model.name}': use {known}.")
    return MODELS[model.name]


@dataclass
class FrequencyModel:
    """A fitted model with what it needs to score new data."""

    name: str
    estimator: Any
    categorical: list[str]
    numeric: list[str]
    train_mean_frequency: float
    params: dict[str, Any] = field(default_factory=dict)
    # Metrics computed at training time, per split (the evaluate step reuses them).
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    # Kept levels of the categorical columns whose rare levels were grouped into OTHER.
    levels: dict[str, list[str]] = field(default_factory=dict)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted claim frequency (claims per unit of exposure)."""
        return self.predict_features(features(df, self.categorical, self.numeric, self.levels))

    def predict_features(self, x: pd.DataFrame) -> np.ndarray:
        """Predicted claim frequency from columns ``features`` already built."""
        return np.asarray(self.estimator.predict(x), dtype=float)


@dataclass
class Fit:
    """A fitted model and the splits' model inputs built for it (reused for scoring)."""

    model: FrequencyModel
    train: tuple[pd.DataFrame, np.ndarray, np.ndarray]
    validation: tuple[pd.DataFrame, np.ndarray, np.ndarray] | None
    train_deviance: float | None


def fit(
    model: DictConfig,
    data: DictConfig,
    train: pd.DataFrame,
    validation: pd.DataFrame | None = None,
) -> Fit:
    """Fit the configured model with exposure as sample weight.

    Features are built once per split; the validation split drives the
    gradient-boosting model's early stopping.
    """
    categorical, numeric = list(data.categorical), list(data.numeric)
    model_unit = unit(model)
    estimator = model_unit.build(model, categorical, numeric)
    # A model that bins its inputs (max_bins) takes at most that many levels per column.
    levels = (
        rare_level_groups(train, categorical, int(model.max_bins) - 1)
        if "max_bins" in model
        else {}
    )

    def split(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        return features(df, categorical, numeric, levels), frequency(df, data), exposure(df, data)

    train_split = split(train)
    validation_split = split(validation) if validation is not None else None
    model_unit.fit(estimator, model, train_split, validation_split)
    params = {str(k): v for k, v in dict(model).items() if k != "name"}
    params |= model_unit.fitted_params(estimator)
    fitted = FrequencyModel(
        name=model.name,
        estimator=estimator,
        categorical=categorical,
        numeric=numeric,
        train_mean_frequency=float(np.sum(train[data.target]) / np.sum(train_split[2])),
        params=params,
        levels=levels,
    )
    deviance = model_unit.train_deviance(estimator, train_split)
    return Fit(fitted, train_split, validation_split, deviance)


def rare_level_groups(df: pd.DataFrame, categorical: list[str], keep: int) -> dict[str, list[str]]:
    """Kept levels of each column with more than ``keep + 1`` levels (the rest: ``OTHER``).

    The most frequent ``keep`` levels stay; a warning names each grouped column.
    """
    levels = {}
    for col in categorical:
        values = df[col]
        if isinstance(values.dtype, pd.CategoricalDtype):  # counted on the codes, no copy
            counts = values.value_counts()
            counts = counts[counts > 0]
            counts = counts.groupby(counts.index.astype(str)).sum()
        else:
            counts = values.astype(str).value_counts()
        if len(counts) <= keep + 1:
            continue
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        levels[col] = sorted(level for level, _ in ranked[:keep])
        log.warning(
            "Column '%s' has %d levels and the model takes at most %d: the %d rarest "
            "are grouped as '%s' (stored with the model, applied when scoring).",
            col,
            len(counts),
            keep + 1,
            len(counts) - keep,
            OTHER,
        )
    return levels
