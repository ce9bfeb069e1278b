"""Feature preprocessing and the three Poisson frequency models."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import PoissonRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder

from steps.errors import ConfigError

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
    """The model's input columns: categories as ``category`` dtype, numbers as floats.

    For a column in ``levels``, values not among its kept levels become ``OTHER``.
    """
    out = pd.DataFrame(index=df.index)
    for col in categorical:
        values = df[col].astype(str)
        if levels and col in levels:
            values = values.where(values.isin(levels[col]), OTHER)
        out[col] = values.astype("category")
    for col in numeric:
        out[col] = df[col].astype(float)
    return out


@dataclass
class FrequencyModel:
    """A fitted model with what it needs to score new data."""

    name: str
    estimator: object
    categorical: list[str]
    numeric: list[str]
    train_mean_frequency: float
    params: dict[str, object] = field(default_factory=dict)
    # Kept levels of the categorical columns whose rare levels were grouped into OTHER.
    levels: dict[str, list[str]] = field(default_factory=dict)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted claim frequency (claims per unit of exposure)."""
        x = features(df, self.categorical, self.numeric, self.levels)
        return np.asarray(self.estimator.predict(x), dtype=float)


def build_estimator(model: DictConfig, categorical: list[str], numeric: list[str]) -> object:
    """An unfitted scikit-learn estimator for the ``model`` config group."""
    if model.name == "hgb_poisson":
        return HistGradientBoostingRegressor(
            loss="poisson",
            learning_rate=model.learning_rate,
            max_iter=model.max_iter,
            max_leaf_nodes=model.max_leaf_nodes,
            min_samples_leaf=model.min_samples_leaf,
            l2_regularization=model.l2_regularization,
            max_bins=model.max_bins,
            early_stopping=model.early_stopping,
            n_iter_no_change=model.n_iter_no_change,
            categorical_features="from_dtype",
            random_state=model.random_state,
        )
    if model.name == "glm_poisson":
        encode = ColumnTransformer(
            [
                ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
                (
                    "numeric",
                    KBinsDiscretizer(
                        n_bins=model.n_bins,
                        encode="onehot",
                        strategy="quantile",
                        dtype=np.float64,  # explicit: a plain type, safe to save with skops
                    ),
                    numeric,
                ),
            ]
        )
        glm = PoissonRegressor(alpha=model.alpha, max_iter=model.max_iter, solver="newton-cholesky")
        return Pipeline([("encode", encode), ("glm", glm)])
    if model.name == "constant":
        return DummyRegressor(strategy="mean")
    raise ConfigError(
        f"Unknown model.name '{model.name}': use model=hgb_poisson, model=glm_poisson "
        "or model=constant."
    )


def fit(
    model: DictConfig,
    data: DictConfig,
    train: pd.DataFrame,
    validation: pd.DataFrame | None = None,
) -> FrequencyModel:
    """Fit the configured model with exposure as sample weight.

    The validation split drives the gradient-boosting model's early stopping.
    """
    categorical, numeric = list(data.categorical), list(data.numeric)
    estimator = build_estimator(model, categorical, numeric)
    levels = (
        rare_level_groups(train, categorical, int(model.max_bins) - 1)
        if isinstance(estimator, HistGradientBoostingRegressor)
        else {}
    )
    x, w = features(train, categorical, numeric, levels), exposure(train, data)
    y = frequency(train, data)
    if isinstance(estimator, HistGradientBoostingRegressor) and model.early_stopping:
        if validation is None:
            raise ConfigError("model.early_stopping=true needs a validation split.")
        estimator.fit(
            x,
            y,
            sample_weight=w,
            X_val=features(validation, categorical, numeric, levels),
            y_val=frequency(validation, data),
            sample_weight_val=exposure(validation, data),
        )
    elif isinstance(estimator, Pipeline):
        with warnings.catch_warnings():
            # Integer columns with a heavy mode (BonusMalus 50) give fewer distinct
            # quantile bins than asked for; dropping the empty ones is intended.
            warnings.filterwarnings("ignore", message="Bins whose width are too small")
            estimator.fit(x, y, glm__sample_weight=w)
    else:
        estimator.fit(x, y, sample_weight=w)
    params = {k: v for k, v in dict(model).items() if k != "name"}
    if isinstance(estimator, HistGradientBoostingRegressor):
        params["n_iter"] = int(estimator.n_iter_)
    return FrequencyModel(
        name=model.name,
        estimator=estimator,
        categorical=categorical,
        numeric=numeric,
        train_mean_frequency=float(np.sum(train[data.target]) / np.sum(w)),
        params=params,
        levels=levels,
    )


def rare_level_groups(df: pd.DataFrame, categorical: list[str], keep: int) -> dict[str, list[str]]:
    """Kept levels of each column with more than ``keep + 1`` levels (the rest: ``OTHER``).

    The most frequent ``keep`` levels stay; a warning names each grouped column.
    """
    levels = {}
    for col in categorical:
        counts = df[col].astype(str).value_counts()
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
