"""Data sources: files (local and s3://), OpenML with its cache, and clear failures."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import pandas as pd
import pytest

from conf import compose
from conf.errors import DataError
from steps.sources import load
from steps.sources.simulate import generate


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(300, 5).drop(columns=["TrueFrequency"])


def file_cfg(path: str, *extra: str):
    return compose(["data=file", f"data.path={path}", *extra]).data


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_file_source_reads_csv_and_parquet(
    frame: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"claims.{suffix}"
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    loaded = load(file_cfg(str(path)))
    assert len(loaded) == 300
    assert loaded["ClaimNb"].sum() == frame["ClaimNb"].sum()


def test_file_source_reads_s3(frame: pd.DataFrame, aws: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="claims")
    s3.put_object(Bucket="claims", Key="in/claims.csv", Body=frame.to_csv(index=False).encode())
    loaded = load(file_cfg("s3://claims/in/claims.csv"))
    assert loaded["Exposure"].sum() == pytest.approx(frame["Exposure"].sum())


def test_missing_s3_object_names_the_uri(aws: str) -> None:
    boto3.client("s3").create_bucket(Bucket="claims")
    with pytest.raises(DataError, match=re.escape("s3://claims/none.csv")):
        load(file_cfg("s3://claims/none.csv"))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.path='.*nowhere.csv' does not exist"):
        load(file_cfg(str(tmp_path / "nowhere.csv")))


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"Could not read data.path='.*broken.parquet' as PARQUET"):
        load(file_cfg(str(path)))


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "claims.xlsx"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=re.escape("data.format=csv|parquet")):
        load(file_cfg(str(path)))


def test_openml_cache_is_used_without_network(frame: pd.DataFrame, tmp_path: Path) -> None:
    frame.to_parquet(tmp_path / "openml-41214.parquet")
    cfg = compose(["data=fremtpl2freq", f"data.cache_dir={tmp_path}"]).data
    pd.testing.assert_frame_equal(load(cfg), frame)


def test_openml_offline_suggests_synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import openml

    monkeypatch.setattr(openml.config, "server", "http://127.0.0.1:9/api/v1/xml")
    monkeypatch.setattr(openml.config, "connection_n_retries", 1)
    cfg = compose(["data=fremtpl2freq", f"data.cache_dir={tmp_path}"]).data
    with pytest.raises(DataError, match="data=synthetic") as info:
        load(cfg)
    assert "41214" in str(info.value)
    assert not (tmp_path / "openml-41214.parquet").exists()
