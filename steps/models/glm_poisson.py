"""Poisson GLM on one-hot categories and quantile-binned numeric columns."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING, DictConfig

from conf.schema import ModelConfig
from steps.models.base import ModelUnit, Split


@dataclass
class GLMPoissonConfig(ModelConfig):
    alpha: float = MISSING
    max_iter: int = MISSING
    # Numeric columns are cut into quantile bins and one-hot encoded, so the GLM
    # can follow non-linear effects; categorical columns are one-hot encoded.
    n_bins: int = MISSING


class GLMPoisson(ModelUnit):
    name = "glm_poisson"
    schema = GLMPoissonConfig

    def build(self, cfg: DictConfig, categorical: list[str], numeric: list[str]) -> Any:
        import numpy as np
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import PoissonRegressor
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder

        # An explicit plain dtype: the fitted encoder then saves with skops' default types.
        bins = KBinsDiscretizer(
            n_bins=cfg.n_bins, encode="onehot", strategy="quantile", dtype=np.float64
        )
        encode = ColumnTransformer(
            [
                ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
                ("numeric", bins, numeric),
            ]
        )
        glm = PoissonRegressor(alpha=cfg.alpha, max_iter=cfg.max_iter, solver="newton-cholesky")
        return Pipeline([("encode", encode), ("glm", glm)])

    def fit(self, estimator: Any, cfg: DictConfig, train: Split, validation: Split | None) -> None:
        x, y, w = train
        with warnings.catch_warnings():
            # Integer columns with a heavy mode (BonusMalus 50) give fewer distinct
            # quantile bins than asked for; dropping the empty ones is intended.
            warnings.filterwarnings("ignore", message="Bins whose width are too small")
            estimator.fit(x, y, glm__sample_weight=w)
