"""The synthetic data look like freMTPL2freq and come from the known true frequency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException

from conf import compose
from steps.sources import load
from steps.sources.simulate import BRANDS, REGIONS, TRUTHS, generate

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


@pytest.mark.parametrize("truth", sorted(TRUTHS))
def test_claims_follow_the_true_frequency(truth: str) -> None:
    df = generate(200_000, 2, truth)
    np.testing.assert_allclose(df["TrueFrequency"], TRUTHS[truth](df))
    expected = (df["TrueFrequency"] * df["Exposure"]).sum()
    assert abs(df["ClaimNb"].sum() - expected) < 4 * np.sqrt(expected)
    assert 0.08 < df["ClaimNb"].sum() / df["Exposure"].sum() < 0.12
    young = df["DrivAge"] < 22
    assert df.loc[young, "TrueFrequency"].mean() > 2 * df.loc[~young, "TrueFrequency"].mean()


def test_truths_share_the_policies_and_differ_in_claims() -> None:
    v1, v2 = generate(5000, 3, "v1"), generate(5000, 3, "v2")
    policies = [c for c in v1.columns if c not in ("ClaimNb", "TrueFrequency")]
    pd.testing.assert_frame_equal(v1[policies], v2[policies])
    assert not np.allclose(v1["TrueFrequency"], v2["TrueFrequency"])
    with pytest.raises(ValueError, match="v1, v2"):
        generate(10, 3, "v3")


def _bonus_malus_relativity(df: pd.DataFrame, drivers: pd.Series) -> float:
    """Mean true frequency at bonus-malus 100 over that at 50, for a group of drivers."""
    freq = df.loc[drivers, "TrueFrequency"]
    bonus = df.loc[drivers, "BonusMalus"]
    return float(freq[bonus == 100].mean() / freq[bonus == 50].mean())


def test_v2_bonus_malus_weighs_less_for_novices_and_v1_has_no_such_interaction() -> None:
    # Same cars and places in every row: only driver age and bonus-malus vary.
    n = 4000
    ages = np.repeat([20, 60], n // 2)
    bonus = np.tile([50, 100], n // 2)
    df = generate(n, 0)
    df["DrivAge"], df["BonusMalus"] = ages, bonus
    df["VehAge"], df["VehPower"], df["Density"] = 5, 6, 400
    df["VehBrand"], df["VehGas"], df["Region"] = df["VehBrand"].iloc[0], "Regular", "R24"
    novice, experienced = df["DrivAge"] == 20, df["DrivAge"] == 60
    by_age = {}
    for truth, frequency in TRUTHS.items():
        df["TrueFrequency"] = frequency(df)
        by_age[truth] = _bonus_malus_relativity(df, novice) / _bonus_malus_relativity(
            df, experienced
        )
    assert by_age["v1"] == pytest.approx(1.0)
    assert by_age["v2"] < 0.5


def test_the_config_picks_the_truth() -> None:
    cfg = compose(["data.n_rows=3000", "seed=4"])
    default = load(cfg.data)
    other = "v1" if cfg.data.truth == "v2" else "v2"
    assert default.equals(generate(3000, 4, str(cfg.data.truth)))
    cfg.data.truth = other
    assert load(cfg.data)["TrueFrequency"].equals(generate(3000, 4, other)["TrueFrequency"])
    with pytest.raises(ConfigCompositionException, match=r"data\.truth"):
        compose(["data.truth=v9"])
