"""The synthetic data look like freMTPL2freq and come from the known true frequency."""

from __future__ import annotations

import numpy as np
import pandas as pd

from steps.sources.simulate import BRANDS, REGIONS, generate, true_frequency

COLUMNS = [
    "IDpol", "ClaimNb", "Exposure", "Area", "VehPower", "VehAge", "DrivAge",
    "BonusMalus", "VehBrand", "VehGas", "Density", "Region",
]  # fmt: skip


def test_same_seed_same_data_other_seed_other_data() -> None:
    pd.testing.assert_frame_equal(generate(2000, 7), generate(2000, 7))
    assert not generate(2000, 7)["ClaimNb"].equals(generate(2000, 8)["ClaimNb"])


def test_columns_types_and_ranges() -> None:
    df = generate(50_000, 0)
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert df["IDpol"].is_unique
    assert df["Exposure"].between(0.0027, 1.0).all()
    assert df["DrivAge"].between(18, 100).all() and df["BonusMalus"].between(50, 230).all()
    assert df["VehPower"].between(4, 15).all() and df["Density"].between(1, 27_000).all()
    assert set(df["VehBrand"].unique()) <= set(BRANDS)
    assert set(df["Region"].unique()) <= set(REGIONS)
    assert set(df["Area"].unique()) == set("ABCDEF")
    assert set(df["VehGas"].unique()) == {"Diesel", "Regular"}


def test_marginals_are_plausible() -> None:
    df = generate(200_000, 1)
    frequency = df["ClaimNb"].sum() / df["Exposure"].sum()
    assert 0.08 < frequency < 0.12  # freMTPL2freq: about 0.10 claims per year
    assert 0.5 < df["Exposure"].mean() < 0.65
    assert 40 < df["DrivAge"].mean() < 50
    assert (df["BonusMalus"] == 50).mean() > 0.5
    assert 0.9 < (df["ClaimNb"] == 0).mean() < 0.99


def test_claims_follow_the_true_frequency() -> None:
    df = generate(200_000, 2)
    np.testing.assert_allclose(df["TrueFrequency"], true_frequency(df))
    expected = (df["TrueFrequency"] * df["Exposure"]).sum()
    assert abs(df["ClaimNb"].sum() - expected) < 4 * np.sqrt(expected)
    young = df["DrivAge"] < 22
    assert df.loc[young, "TrueFrequency"].mean() > 2 * df.loc[~young, "TrueFrequency"].mean()
