"""Model units: each registered model fits, scores and reports what it learnt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conf import CONF_DIR, compose
from steps.metrics import scores
from steps.model import features, fit
from steps.models import MODELS
from steps.runtime.io import read_split


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
