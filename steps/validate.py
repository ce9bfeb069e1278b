"""Validation of the raw frame before anything is trained, with pandera."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from omegaconf import DictConfig

from conf.errors import DataError


def schema(data: DictConfig) -> pa.DataFrameSchema:
    """The rules a data set must meet, built from the ``data`` config group."""
    numeric = {
        col: pa.Column(float, coerce=True, nullable=False, checks=pa.Check(_finite, name="finite"))
        for col in data.numeric
    }
    categorical = {col: pa.Column(nullable=False) for col in data.categorical}
    counts = {
        data.target: pa.Column(
            float,
            coerce=True,
            nullable=False,
            checks=[
                pa.Check.ge(0, error="count >= 0"),
                pa.Check(_finite, name="finite"),
                pa.Check(_whole, name="whole"),
            ],
        )
    }
    if data.exposure:
        exposure_checks = [pa.Check.gt(0, error="exposure > 0"), pa.Check(_finite, name="finite")]
        if data.get("max_exposure") is not None:
            bound = float(data.max_exposure)
            exposure_checks.append(pa.Check.le(bound, error=f"exposure <= {bound:g}"))
        counts[data.exposure] = pa.Column(
            float, coerce=True, nullable=False, checks=exposure_checks
        )
    # Identifier and true-frequency columns must exist when configured (any values).
    extra = {c: pa.Column(nullable=True) for c in (data.id_column, data.true_frequency) if c}
    return pa.DataFrameSchema({**extra, **counts, **numeric, **categorical}, strict=False)


def _finite(series: pd.Series) -> pd.Series:
    """No infinities (missing and non-numeric values are reported by other rules)."""
    values = pd.Series(pd.to_numeric(series, errors="coerce"))
    return values.isna() | (values.abs() < float("inf"))


def _whole(series: pd.Series) -> pd.Series:
    """Whole numbers (claim counts); non-finite values are reported by the finite rule."""
    values = pd.Series(pd.to_numeric(series, errors="coerce"))
    finite = values.abs() < float("inf")
    return values.isna() | ~finite | (values == values.round())


def validate(df: pd.DataFrame, data: DictConfig) -> pd.DataFrame:
    """Return ``df``, its numeric columns made floats in place, or raise one ``DataError``.

    The error lists every broken rule with its column and how many rows break it.
    """
    overlap = set(data.categorical) & set(data.numeric)
    if overlap:
        raise DataError(f"Columns listed as both categorical and numeric: {sorted(overlap)}.")
    duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if duplicated:
        raise DataError(
            f"The data set '{data.name}' has duplicate column names: {', '.join(duplicated)}. "
            "Rename them so that every column has its own name."
        )
    if len(df) == 0:
        raise DataError(f"The data set '{data.name}' has no rows.")
    try:
        return schema(data).validate(df, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as err:
        raise DataError(_describe(err.failure_cases, data.name, len(df))) from None


def _describe(cases: pd.DataFrame, name: str, n_rows: int) -> str:
    """One paragraph: each broken rule, its column, and how many rows break it."""
    problems: list[str] = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=True):
        if str(check).startswith("dtype("):
            continue  # reported by the coerce_dtype rule of the same column
        if check == "column_in_dataframe":
            missing = group["failure_case"].astype(str).tolist()
            problems.extend(f"column '{m}' is missing" for m in missing)
            continue
        failures = group["failure_case"]
        examples = ", ".join(repr(_plain(v)) for v in failures.dropna().unique()[:3])
        rule = {
            "not_nullable": "no missing values",
            "finite": "finite numbers",
            "whole": "whole numbers (claim counts)",
        }.get(str(check), str(check))
        if str(check).startswith("coerce_dtype"):
            rule = "numeric values"
        count = len(group) if len(group) > 1 or group["index"].notna().all() else n_rows
        detail = f" (e.g. {examples})" if examples else ""
        problems.append(f"column '{column}' must have {rule}: {count} rows break it{detail}")
    return f"Data set '{name}' ({n_rows} rows) failed validation: " + "; ".join(problems) + "."


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (``-3.0``, not ``np.float64(-3.0)``)."""
    return value.item() if isinstance(value, np.generic) else value
