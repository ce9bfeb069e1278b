"""Validation names the column, the rule and how many rows break it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conf import compose
from conf.errors import DataError
from steps.sources.simulate import generate
from steps.validate import validate

CFG = compose(["data.n_rows=500"])


@pytest.fixture
def frame() -> pd.DataFrame:
    return generate(500, 3)


def breaks(df: pd.DataFrame) -> str:
    with pytest.raises(DataError) as info:
        validate(df, CFG.data)
    return str(info.value)


def test_valid_data_pass_with_numeric_columns_as_float(frame: pd.DataFrame) -> None:
    out = validate(frame, CFG.data)
    assert len(out) == len(frame)
    assert out["DrivAge"].dtype == float


def test_missing_column(frame: pd.DataFrame) -> None:
    assert "column 'Density' is missing" in breaks(frame.drop(columns=["Density"]))


def test_non_positive_exposure(frame: pd.DataFrame) -> None:
    frame.loc[:2, "Exposure"] = [0.0, -1.0, 0.0]
    assert "column 'Exposure' must have exposure > 0: 3 rows break it" in breaks(frame)


def test_negative_counts(frame: pd.DataFrame) -> None:
    frame.loc[10:14, "ClaimNb"] = -1
    assert "column 'ClaimNb' must have count >= 0: 5 rows break it" in breaks(frame)


def test_examples_are_plain_values(frame: pd.DataFrame) -> None:
    frame["Exposure"] = frame["Exposure"].astype(float)
    frame.loc[2, "Exposure"] = -3.0
    message = breaks(frame)
    assert "(e.g. -3.0)" in message and "np." not in message


def test_missing_values(frame: pd.DataFrame) -> None:
    frame["DrivAge"] = frame["DrivAge"].astype(float)
    frame.loc[[1, 5], "DrivAge"] = np.nan
    frame["Region"] = frame["Region"].astype(object)
    frame.loc[7, "Region"] = None
    message = breaks(frame)
    assert "column 'DrivAge' must have no missing values: 2 rows break it" in message
    assert "column 'Region' must have no missing values: 1 rows break it" in message


def test_non_numeric_values(frame: pd.DataFrame) -> None:
    frame["VehAge"] = frame["VehAge"].astype(object)
    frame.loc[0, "VehAge"] = "old"
    message = breaks(frame)
    assert "column 'VehAge' must have numeric values: 1 rows break it (e.g. 'old')" in message


def test_infinite_values(frame: pd.DataFrame) -> None:
    frame["Density"] = frame["Density"].astype(float)
    frame.loc[3, "Density"] = np.inf
    assert "column 'Density' must have finite numbers: 1 rows break it" in breaks(frame)


def test_all_problems_reported_together(frame: pd.DataFrame) -> None:
    frame.loc[0, "Exposure"] = 0.0
    frame.loc[1, "ClaimNb"] = -2
    message = breaks(frame.drop(columns=["VehGas"]))
    assert message.count("column '") == 3
    assert message.startswith("Data set 'synthetic_fremtpl2freq' (500 rows) failed validation")


def test_empty_data(frame: pd.DataFrame) -> None:
    assert "has no rows" in breaks(frame.iloc[:0])
