"""Model units: each registered model fits, scores and reports what it learnt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from conf import CONF_DIR, compose
from conf.errors import ConfigError
from steps.checks import check_config, check_tuning
from steps.metrics import scores
from steps.model import features, fit
from steps.models import MODELS, trusted_types
from steps.models.glm_spline import quantile_knots
from steps.runtime.io import read_split
from steps.train import TRUSTED_TYPES, save_model


def test_every_registered_model_has_its_yaml_and_search_space_and_nothing_else_does() -> None:
    for group in ("model", "tuning"):
        assert {p.stem for p in (CONF_DIR / group).glob("*.yaml")} == set(MODELS), group


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_fits_and_its_train_deviance_matches_a_prediction(
    name: str, splits: dict[str, Path]
) -> None:
    cfg = compose(["data.n_rows=20000", f"model={name}"])
    if "max_iter" in cfg.model:
        cfg.model.max_iter = 20  # a few iterations show the same behaviour, faster
    train, validation = read_split(splits["train"]), read_split(splits["validation"])
    fitted = fit(cfg.model, cfg.data, train, validation)
    assert fitted.model.name == name
    _, y, w = fitted.train
    predicted = fitted.model.predict(train)
    assert predicted.shape == (len(train),) and np.all(predicted > 0)
    if name == "hgb_poisson":  # the boosting model tracks it while it fits
        assert 0 < fitted.model.params["n_iter"] <= cfg.model.max_iter
        assert fitted.train_deviance is not None
    if fitted.train_deviance is not None:  # computed during fitting, without predicting
        assert fitted.train_deviance == pytest.approx(
            scores(y * w, w, predicted)["poisson_deviance"], rel=1e-9
        )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_file_loads_trusting_the_types_its_unit_declares(
    name: str, splits: dict[str, Path], tmp_path: Path
) -> None:
    cfg = compose(["data.n_rows=20000", f"model={name}"])
    if "max_iter" in cfg.model:
        cfg.model.max_iter = 5
    train = read_split(splits["train"])
    model = fit(cfg.model, cfg.data, train, read_split(splits["validation"])).model
    save_model(model, tmp_path / "model.skops")
    declared = set(MODELS[name].trusted_types)
    assert (
        set(sio.get_untrusted_types(file=tmp_path / "model.skops")) <= set(TRUSTED_TYPES) | declared
    )
    loaded = sio.load(tmp_path / "model.skops", trusted=[*TRUSTED_TYPES, *trusted_types()])
    np.testing.assert_allclose(loaded.predict(train), model.predict(train))


def test_glm_spline_coefficients_are_in_its_report_and_give_its_predictions(
    splits: dict[str, Path],
) -> None:
    cfg = compose(["data.n_rows=20000", "model=glm_spline"])
    train = read_split(splits["train"])
    fitted = fit(cfg.model, cfg.data, train, read_split(splits["validation"]))
    params = fitted.model.params
    assert params["log_columns"] == ["Density"]
    knots = params["knots"]
    assert list(knots) == list(cfg.data.numeric)
    for column, points in knots.items():  # distinct, increasing, in the column's own units
        assert len(points) == cfg.model.n_knots and np.all(np.diff(points) > 0), column
        assert points[0] == pytest.approx(train[column].min(), rel=1e-6)
        assert points[-1] == pytest.approx(train[column].max(), rel=1e-6)
    coefficients = params["coefficients"]
    splines_per_column = cfg.model.n_knots + cfg.model.degree - 1
    for column in cfg.data.numeric:
        names = [f"{column}_sp_{i}" for i in range(splines_per_column)]
        assert all(n in coefficients for n in names), column
    for column in cfg.data.categorical:
        levels = train[column].astype(str).unique()
        assert all(f"{column}_{level}" in coefficients for level in levels), column
    # The reported numbers are the model: exp(intercept + terms) is its prediction.
    x = fitted.train[0]
    encoded = fitted.model.estimator["encode"].transform(x)
    terms = np.asarray(encoded) @ np.fromiter(coefficients.values(), float)
    np.testing.assert_allclose(
        np.exp(params["intercept"] + terms), fitted.model.predict(train), rtol=1e-9
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_run_checks_accept_every_model_and_its_search_space(name: str) -> None:
    cfg = compose([f"model={name}"])
    check_config(cfg)
    if cfg.tuning.parameters:  # the constant baseline has nothing to tune
        check_tuning(cfg)


def test_glm_spline_log_columns_must_be_numeric_columns(splits: dict[str, Path]) -> None:
    cfg = compose(["data.n_rows=20000", "model=glm_spline", "model.log_columns=[Density,Area]"])
    with pytest.raises(ConfigError, match="'Area'"):
        fit(cfg.model, cfg.data, read_split(splits["train"]))


def test_quantile_knots_are_distinct_and_follow_a_heavy_mode() -> None:
    values = np.concatenate([np.full(600, 50.0), np.arange(51.0, 151.0), np.arange(151.0, 451.0)])
    plain = np.unique(np.quantile(values, np.linspace(0, 1, 6)))
    assert len(plain) < 6  # the quantiles alone coincide at the mode
    knots = quantile_knots(values, 6)
    assert len(knots) == 6 and np.all(np.diff(knots) > 0)
    assert knots[0] == 50 and knots[-1] == 450
    assert np.sum(knots < 151) >= 3  # most new knots go where most values are
    assert list(quantile_knots(np.array([0.0, 1.0, 1.0, 0.0]), 6)) == [0.0, 1.0]


def test_features_keep_ready_columns_and_convert_the_others() -> None:
    df = pd.DataFrame(
        {
            "ready": pd.Series(["a", "b", "a"], dtype="category"),
            "codes": [1, 2, 1],
            "number": [1, 2, 3],
        }
    )
    x = features(df, ["ready", "codes"], ["number"])
    assert x["ready"].dtype == df["ready"].dtype  # already categories of strings: kept
    assert list(x["codes"].cat.categories) == ["1", "2"]
    assert x["number"].dtype == float
    assert list(x.columns) == ["ready", "codes", "number"]


def test_default_boosting_stays_sane_on_heavily_duplicated_rows() -> None:
    """200,000 rows resampled from 2,000: many identical rows, many leaves without claims.

    Without an L2 penalty a leaf's Newton step can divide by its tiny predicted
    claims; the defaults must keep predictions and deviance finite and sensible.
    """
    from steps.sources.simulate import generate

    cfg = compose(["data.n_rows=20000"])
    few = generate(2000, 5)
    rows = few.sample(200_000, replace=True, random_state=1).reset_index(drop=True)
    train, validation, test = rows[:140_000], rows[140_000:170_000], rows[170_000:]
    fitted = fit(cfg.model, cfg.data, train, validation)
    predicted = fitted.model.predict(test)
    exposure, claims = test["Exposure"].to_numpy(), test["ClaimNb"].to_numpy()
    model = scores(claims, exposure, predicted)["poisson_deviance"]
    constant = np.full(len(test), claims.sum() / exposure.sum())
    baseline = scores(claims, exposure, constant)["poisson_deviance"]
    assert np.isfinite(model) and model < baseline
    assert 0.5 < (predicted * exposure).sum() / claims.sum() < 2.0
