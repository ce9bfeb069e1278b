"""Synthetic data with freMTPL2freq's columns, drawn from a known true frequency.

The marginals follow the real data set roughly; the claim frequency is a
fixed, non-linear function of the features, so the best achievable deviance on
any sample is known. Two true frequencies share the same policies (``TRUTHS``):

- ``v1``: smooth effects per column and two small interactions; a smooth additive
  GLM recovers nearly all of it.
- ``v2``: ``v1`` plus interactions known in motor portfolios, which an additive
  model cannot express: the bonus-malus level means less for novice drivers (they
  start at 100 and have had no time to earn a bonus), and young drivers claim more
  in dense areas. On real freMTPL2freq, gradient boosting beats a GLM; on ``v2`` it
  does too, on ``v1`` it does not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from steps.sources.synthetic import Truth

BRANDS = {
    "B1": 0.24, "B2": 0.24, "B12": 0.24, "B3": 0.08, "B5": 0.05, "B6": 0.04,
    "B4": 0.04, "B10": 0.03, "B11": 0.02, "B13": 0.02, "B14": 0.01,
}  # fmt: skip
REGIONS = {
    "R24": 0.237, "R82": 0.125, "R93": 0.117, "R11": 0.103, "R53": 0.062, "R52": 0.057,
    "R91": 0.053, "R72": 0.046, "R31": 0.040, "R54": 0.028, "R73": 0.025, "R41": 0.019,
    "R25": 0.016, "R26": 0.016, "R23": 0.013, "R22": 0.012, "R83": 0.008, "R74": 0.007,
    "R94": 0.007, "R21": 0.004, "R42": 0.003, "R43": 0.002,
}  # fmt: skip
# Fixed regional effects on the log frequency (part of the true function).
REGION_EFFECT = dict(
    zip(REGIONS, np.random.default_rng(2024).normal(0.0, 0.15, len(REGIONS)).round(3), strict=True)
)
AREAS = list("ABCDEF")
AREA_QUANTILES = [0.15, 0.26, 0.54, 0.76, 0.97]
# Intercept chosen so that the mean frequency is about 0.10 claims per year.
LOG_BASE_FREQUENCY = -2.67
# The v2 interactions (see ``true_frequency_v2``). Centred on the mean experience
# of the policies with a malus, so the average bonus-malus effect and the mean
# frequency stay those of v1.
V2_BONUS_SLOPE = 1.6
V2_MEAN_EXPERIENCE = 0.75
V2_URBAN_NOVICE = 0.3


def true_frequency_v1(df: pd.DataFrame) -> np.ndarray:
    """The ``v1`` true expected claims per year of exposure for each row."""
    return np.exp(_log_frequency_v1(df))


def _log_frequency_v1(df: pd.DataFrame) -> np.ndarray:
    age = df["DrivAge"].to_numpy(float)
    bonus = df["BonusMalus"].to_numpy(float)
    veh_age = df["VehAge"].to_numpy(float)
    power = df["VehPower"].to_numpy(float)
    density = df["Density"].to_numpy(float)
    brand_b12 = (df["VehBrand"] == "B12").to_numpy()
    young = age < 26
    return (
        LOG_BASE_FREQUENCY
        + 1.1 * np.exp(-(age - 18.0) / 6.0)  # young drivers
        + 0.35 * np.clip((age - 70.0) / 20.0, 0.0, None)  # the oldest drivers
        + 1.5 * np.log(bonus / 50.0)
        + 0.35 * (veh_age < 1)
        - 0.3 * np.minimum(veh_age, 15.0) / 15.0
        + 0.06 * (power - 6.0) * young  # powerful cars, young drivers
        + 0.12 * (np.log(density) - 6.0)
        + 0.3 * (brand_b12 & (veh_age < 2))
        + 0.08 * (df["VehGas"] == "Diesel").to_numpy()
        + df["Region"].map(REGION_EFFECT).to_numpy(float)
    )


def true_frequency_v2(df: pd.DataFrame) -> np.ndarray:
    """The ``v2`` true frequency: ``v1`` with driver age x bonus-malus and x density."""
    age = df["DrivAge"].to_numpy(float)
    bonus = df["BonusMalus"].to_numpy(float)
    density = df["Density"].to_numpy(float)
    # Years of driving, as the generator draws bonus-malus: 0 at 18, full from 43.
    experience = np.clip((age - 18.0) / 25.0, 0.0, 1.0)
    novice = np.exp(-(age - 18.0) / 8.0)
    log_freq = (
        _log_frequency_v1(df)
        # The bonus-malus slope is 1.5 in v1; here it grows with experience:
        # 1.5 + V2_BONUS_SLOPE * (experience - V2_MEAN_EXPERIENCE).
        + V2_BONUS_SLOPE * (experience - V2_MEAN_EXPERIENCE) * np.log(bonus / 50.0)
        + V2_URBAN_NOVICE * novice * (np.log(density) - 6.0)  # young drivers in cities
    )
    return np.exp(log_freq)


def generate(n_rows: int, seed: int, truth: str = "v1") -> pd.DataFrame:
    """Draw ``n_rows`` policies; the same seed always gives the same data.

    ``truth`` names the true frequency (``TRUTHS``); the policies do not depend on it.
    """
    if truth not in TRUTHS:
        raise ValueError(f"truth must be one of {', '.join(TRUTHS)}, got {truth!r}")
    if n_rows < 1:
        raise ValueError(f"n_rows must be positive, got {n_rows}")
    rng = np.random.default_rng(seed)
    age = np.clip(18 + np.round(rng.gamma(4.5, 6.2, n_rows)), 18, 100).astype(np.int64)
    novice = np.clip((age - 18) / 25.0, 0.0, 1.0)
    at_floor = rng.random(n_rows) < 0.3 + 0.45 * novice
    bonus = np.where(at_floor, 50, 50 + np.round(rng.gamma(1.3, 14.0 + 20.0 * (1 - novice))))
    log_density = rng.normal(6.0, 2.0, n_rows)
    density = np.clip(np.round(np.exp(log_density)), 1, 27_000).astype(np.int64)
    area_score = log_density + rng.normal(0.0, 0.3, n_rows)
    area_codes = np.searchsorted(np.quantile(area_score, AREA_QUANTILES), area_score)
    exposure = np.where(
        rng.random(n_rows) < 0.26, 1.0, np.clip(rng.beta(0.9, 1.1, n_rows), 0.0027, 1.0)
    ).round(4)
    df = pd.DataFrame(
        {
            "IDpol": np.arange(1, n_rows + 1, dtype=np.int64),
            "Exposure": exposure,
            "Area": pd.Categorical.from_codes(area_codes, categories=AREAS),
            "VehPower": np.clip(4 + rng.poisson(2.3, n_rows), 4, 15).astype(np.int64),
            "VehAge": np.clip(np.round(rng.gamma(1.5, 4.5, n_rows)), 0, 100).astype(np.int64),
            "DrivAge": age,
            "BonusMalus": np.clip(bonus, 50, 230).astype(np.int64),
            "VehBrand": _categorical(rng, BRANDS, n_rows),
            "VehGas": _categorical(rng, {"Diesel": 0.49, "Regular": 0.51}, n_rows),
            "Density": density,
            "Region": _categorical(rng, REGIONS, n_rows),
        }
    )
    frequency = TRUTHS[truth](df)
    df.insert(1, "ClaimNb", rng.poisson(frequency * exposure).astype(np.int64))
    df["TrueFrequency"] = frequency
    return df


TRUTHS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    Truth.v1: true_frequency_v1,
    Truth.v2: true_frequency_v2,
}


def _categorical(rng: np.random.Generator, weights: dict[str, float], n: int) -> pd.Categorical:
    """Draw ``n`` labels with the given relative weights."""
    p = np.fromiter(weights.values(), float)
    codes = rng.choice(len(p), n, p=p / p.sum())
    return pd.Categorical.from_codes(codes, categories=list(weights))
