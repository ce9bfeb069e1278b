"""Bad input: a clear one-paragraph error, a non-zero exit, no metrics or plots left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conf import compose
from pipelines.local import run as run_in_process
from steps.errors import UserError
from steps.synthetic import generate
from tests.local.support import run


def assert_clean_failure(cwd: Path, result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    leftovers = [
        p for p in cwd.rglob("*") if p.name in ("metrics.json", "calibration.png", "lorenz.png")
    ]
    assert leftovers == []
    assert not list(cwd.rglob(".staging-*"))


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return generate(2000, 9).drop(columns=["TrueFrequency"])


def write(df: pd.DataFrame, path: Path) -> str:
    df.to_csv(path, index=False)
    return f"data.path={path}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.max_leaf_nodez=3"], ["model.max_leaf_nodez"]),
        (["model.max_leaf_nodes=lots"], ["model.max_leaf_nodes", "lots"]),
        (["model=xgboost"], ["xgboost"]),
        (["data=file"], ["data.path"]),
        (["data=file", "data.path=missing.csv"], ["data.path='missing.csv' does not exist"]),
        (["split.test_fraction=1.5"], ["split.test_fraction=1.5"]),
    ],
)
def test_bad_overrides_and_paths(tmp_path: Path, args: list[str], expected: list[str]) -> None:
    assert_clean_failure(tmp_path, run(tmp_path, *args), *expected)


def test_bad_data_file_through_the_command_line(claims: pd.DataFrame, tmp_path: Path) -> None:
    bad = claims.copy()
    bad.loc[:2, "Exposure"] = 0.0
    result = run(tmp_path, "data=file", write(bad, tmp_path / "claims.csv"))
    assert_clean_failure(tmp_path, result, "column 'Exposure' must have exposure > 0: 3 rows")
    assert result.stderr.count("\n") == 1  # one paragraph


def fails_in_process(tmp_path: Path, overrides: list[str], *expected: str) -> None:
    """The same runner in-process: a UserError naming the problem, and no outputs."""
    with pytest.raises(UserError) as info:
        run_in_process(compose(overrides), tmp_path / "run")
    for text in expected:
        assert text in str(info.value)
    leftovers = [
        p
        for p in tmp_path.rglob("*")
        if p.name in ("metrics.json", "calibration.png", "lorenz.png")
    ]
    assert leftovers == [] and not list(tmp_path.rglob(".staging-*"))


def test_unreadable_csv(tmp_path: Path) -> None:
    path = tmp_path / "claims.csv"
    path.write_bytes(b"\x00\xff\xfe garbage \x00\n\x01")
    fails_in_process(tmp_path, ["data=file", f"data.path={path}"], "claims.csv")


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("Exposure", 0.0, "column 'Exposure' must have exposure > 0: 5 rows break it"),
        ("Exposure", -0.5, "column 'Exposure' must have exposure > 0: 5 rows break it"),
        ("ClaimNb", -1, "column 'ClaimNb' must have count >= 0: 5 rows break it"),
        ("DrivAge", None, "column 'DrivAge' must have no missing values: 5 rows break it"),
        ("VehAge", "new", "column 'VehAge' must have numeric values: 5 rows break it"),
    ],
)
def test_bad_data(claims: pd.DataFrame, tmp_path: Path, column: str, value, expected: str) -> None:
    bad = claims.copy()
    bad[column] = bad[column].astype(object)
    bad.loc[:4, column] = value
    fails_in_process(tmp_path, ["data=file", write(bad, tmp_path / "claims.csv")], expected)


def test_missing_column(claims: pd.DataFrame, tmp_path: Path) -> None:
    path = write(claims.drop(columns="Region"), tmp_path / "c.csv")
    fails_in_process(tmp_path, ["data=file", path], "column 'Region' is missing")


def test_file_without_exposure_column_trains(claims: pd.DataFrame, tmp_path: Path) -> None:
    path = write(claims.drop(columns="Exposure"), tmp_path / "counts.csv")
    cfg = compose(["data=file", path, "data.exposure=null", "model=glm_poisson"])
    metrics = run_in_process(cfg, tmp_path / "run")
    assert metrics["test"]["exposure"] == metrics["test"]["n_rows"]
    assert (tmp_path / "run" / "metrics.json").is_file()
