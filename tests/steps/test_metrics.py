"""Metrics, Lorenz curve and calibration table on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from steps.metrics import calibration_table, gini, lorenz_curve, scores

RNG = np.random.default_rng(0)
EXPOSURE = RNG.uniform(0.1, 1.0, 5000)
TRUE = np.exp(RNG.normal(-2.3, 0.6, 5000))
CLAIMS = RNG.poisson(TRUE * EXPOSURE).astype(float)


def test_truth_beats_a_constant_and_d2_is_relative_to_the_mean() -> None:
    mean = CLAIMS.sum() / EXPOSURE.sum()
    constant = scores(CLAIMS, EXPOSURE, np.full(5000, mean))
    truth = scores(CLAIMS, EXPOSURE, TRUE)
    assert constant["d2"] == pytest.approx(0.0, abs=1e-12)
    assert truth["poisson_deviance"] < constant["poisson_deviance"]
    assert truth["d2"] > 0.02
    assert constant["predicted_claims"] == pytest.approx(CLAIMS.sum())
    assert truth["n_rows"] == 5000 and truth["exposure"] == pytest.approx(EXPOSURE.sum())


def test_gini_is_zero_for_no_ranking_and_high_for_the_oracle() -> None:
    assert gini(CLAIMS, EXPOSURE, np.ones(5000)) == pytest.approx(0.0, abs=1e-12)
    assert gini(CLAIMS, EXPOSURE, TRUE) > 0.2
    assert gini(CLAIMS, EXPOSURE, CLAIMS / EXPOSURE) > gini(CLAIMS, EXPOSURE, TRUE)
    assert gini(CLAIMS, EXPOSURE, -TRUE) < 0


def test_lorenz_curve_runs_from_origin_to_one() -> None:
    x, y = lorenz_curve(CLAIMS, EXPOSURE, TRUE)
    assert (x[0], y[0], x[-1], y[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)


def test_calibration_bins_cover_the_sample_and_increase() -> None:
    table = calibration_table(CLAIMS, EXPOSURE, TRUE, 10, TRUE)
    assert len(table) == 10
    assert table["n_rows"].sum() == 5000
    assert table["exposure"].sum() == pytest.approx(EXPOSURE.sum())
    assert table["claims"].sum() == CLAIMS.sum()
    np.testing.assert_allclose(table["exposure"], EXPOSURE.sum() / 10, rtol=0.05)
    assert table["predicted_frequency"].is_monotonic_increasing
    np.testing.assert_allclose(table["true_frequency"], table["predicted_frequency"])


def test_ties_are_averaged_so_row_order_never_counts() -> None:
    """A constant prediction scores 0 in any row order; tied groups rank as one."""
    claims_first = np.argsort(-CLAIMS, kind="stable")  # the worst order for a stable sort
    c, e = CLAIMS[claims_first], EXPOSURE[claims_first]
    assert gini(c, e, np.full(5000, 0.1)) == pytest.approx(0.0, abs=1e-12)
    coarse = np.round(np.log(TRUE))  # a handful of tied levels
    shuffled = RNG.permutation(5000)
    assert gini(CLAIMS, EXPOSURE, coarse) == pytest.approx(
        gini(CLAIMS[shuffled], EXPOSURE[shuffled], coarse[shuffled]), abs=1e-12
    )
    x, _ = lorenz_curve(CLAIMS, EXPOSURE, coarse)
    assert len(x) == len(np.unique(coarse)) + 1
