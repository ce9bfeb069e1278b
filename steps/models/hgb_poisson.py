"""Gradient boosting with Poisson loss, native categories, early stopping on validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING, DictConfig

from conf.schema import ModelConfig
from steps.models.base import ModelUnit, Split


@dataclass
class HGBPoissonConfig(ModelConfig):
    learning_rate: float = MISSING
    max_iter: int = MISSING
    max_leaf_nodes: int = MISSING
    min_samples_leaf: int = MISSING
    l2_regularization: float = MISSING
    max_bins: int = MISSING
    early_stopping: bool = MISSING
    n_iter_no_change: int = MISSING
    random_state: int = MISSING


class HGBPoisson(ModelUnit):
    name = "hgb_poisson"
    schema = HGBPoissonConfig

    def build(self, cfg: DictConfig, categorical: list[str], numeric: list[str]) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            loss="poisson",
            learning_rate=cfg.learning_rate,
            max_iter=cfg.max_iter,
            max_leaf_nodes=cfg.max_leaf_nodes,
            min_samples_leaf=cfg.min_samples_leaf,
            l2_regularization=cfg.l2_regularization,
            max_bins=cfg.max_bins,
            early_stopping=cfg.early_stopping,
            n_iter_no_change=cfg.n_iter_no_change,
            categorical_features="from_dtype",
            random_state=cfg.random_state,
        )

    def fit(self, estimator: Any, cfg: DictConfig, train: Split, validation: Split | None) -> None:
        x, y, w = train
        if not cfg.early_stopping:
            estimator.fit(x, y, sample_weight=w)
            return
        if validation is None:
            from conf.errors import ConfigError

            raise ConfigError("model.early_stopping=true needs a validation split.")
        x_val, y_val, w_val = validation
        estimator.fit(x, y, sample_weight=w, X_val=x_val, y_val=y_val, sample_weight_val=w_val)

    def fitted_params(self, estimator: Any) -> dict[str, Any]:
        return {"n_iter": int(estimator.n_iter_)}

    def train_deviance(self, estimator: Any, train: Split) -> float | None:
        # With early stopping on the loss, fitting tracked the half Poisson loss
        # exp(raw) - y * raw of the final model on the whole train split; the
        # deviance adds back the terms that depend on y alone.
        if not len(getattr(estimator, "train_score_", ())):
            return None
        import numpy as np
        from scipy.special import xlogy

        _, y, w = train
        half_loss = -float(estimator.train_score_[-1])
        return 2.0 * (half_loss + float(np.average(xlogy(y, y) - y, weights=w)))
