"""Exposure-weighted Poisson metrics, Lorenz curve and calibration table."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    d2_tweedie_score,
    mean_absolute_error,
    mean_poisson_deviance,
    mean_squared_error,
)

# Smallest frequency used when scoring: the Poisson deviance needs y_pred > 0.
MIN_FREQUENCY = 1e-12


def scores(claims: np.ndarray, exposure: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Exposure-weighted metrics of predicted frequencies against observed claims."""
    observed = claims / exposure
    predicted = np.clip(predicted, MIN_FREQUENCY, None)
    return {
        "poisson_deviance": float(
            mean_poisson_deviance(observed, predicted, sample_weight=exposure)
        ),
        "d2": float(d2_tweedie_score(observed, predicted, sample_weight=exposure, power=1)),
        "mae": float(mean_absolute_error(observed, predicted, sample_weight=exposure)),
        "mse": float(mean_squared_error(observed, predicted, sample_weight=exposure)),
        "gini": gini(claims, exposure, predicted),
        "observed_claims": float(np.sum(claims)),
        "predicted_claims": float(np.sum(predicted * exposure)),
        "exposure": float(np.sum(exposure)),
        "n_rows": len(claims),
    }


def lorenz_curve(
    claims: np.ndarray, exposure: np.ndarray, ranking: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulated share of exposure and of claims, policies ordered from safest to riskiest.

    Policies with the same ranking are one point: the curve runs straight across
    them, the average over every order of the ties (a constant ranking is the
    diagonal, Gini 0), so the order rows happen to come in never counts.
    """
    order = np.argsort(ranking, kind="stable")
    ranked = ranking[order]
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))  # each tie's last row
    cum_exposure = np.concatenate([[0.0], np.cumsum(exposure[order])[ends]])
    cum_claims = np.concatenate([[0.0], np.cumsum(claims[order])[ends]])
    return cum_exposure / cum_exposure[-1], cum_claims / max(cum_claims[-1], 1e-300)


def gini(claims: np.ndarray, exposure: np.ndarray, ranking: np.ndarray) -> float:
    """Gini index of the Lorenz curve: 1 - 2 * area under it (0: no ranking power)."""
    if np.sum(claims) == 0:
        return 0.0
    x, y = lorenz_curve(claims, exposure, ranking)
    return float(1.0 - 2.0 * np.trapezoid(y, x))


def calibration_table(
    claims: np.ndarray,
    exposure: np.ndarray,
    predicted: np.ndarray,
    n_bins: int,
    true_frequency: np.ndarray | None = None,
) -> pd.DataFrame:
    """Rows sorted by prediction and cut into bins of equal exposure.

    Each bin has its exposure-weighted mean observed and predicted frequency
    (and true frequency when it is known). Together the bins cover every row.
    """
    order = np.argsort(predicted, kind="stable")
    cum = np.cumsum(exposure[order])
    bins = np.minimum((cum / cum[-1] * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame(
        {
            "bin": bins,
            "exposure": exposure[order],
            "claims": claims[order],
            "predicted_claims": (predicted * exposure)[order],
        }
    )
    if true_frequency is not None:
        frame["true_claims"] = (true_frequency * exposure)[order]
    table = frame.groupby("bin").agg(
        n_rows=("exposure", "size"), **{c: (c, "sum") for c in frame.columns[1:]}
    )
    table["observed_frequency"] = table["claims"] / table["exposure"]
    table["predicted_frequency"] = table["predicted_claims"] / table["exposure"]
    if true_frequency is not None:
        table["true_frequency"] = table["true_claims"] / table["exposure"]
    return table.reset_index()
