"""Data sources: synthetic (offline default), OpenML freMTPL2freq, and any CSV/Parquet file."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from steps.errors import DataError
from steps.io import staged_outputs
from steps.progress import progress

log = logging.getLogger(__name__)


def load(data: DictConfig) -> pd.DataFrame:
    """Load the raw frame described by the ``data`` config group."""
    loaders = {"synthetic": _synthetic, "openml": _openml, "file": _file}
    if data.source not in loaders:
        raise DataError(
            f"Unknown data.source '{data.source}': choose one of {', '.join(loaders)} "
            "(or pick a preset: data=synthetic, data=fremtpl2freq, data=file)."
        )
    return loaders[data.source](data)


def _synthetic(data: DictConfig) -> pd.DataFrame:
    from steps.synthetic import generate

    log.info("Generating %d synthetic policies (seed %d)", data.n_rows, data.seed)
    return generate(int(data.n_rows), int(data.seed))


def _openml(data: DictConfig) -> pd.DataFrame:
    cache = Path(data.cache_dir) / f"openml-{data.dataset_id}.parquet"
    if cache.is_file():
        log.info("Reading cached OpenML data set %d from %s", data.dataset_id, cache)
        return pd.read_parquet(cache)
    try:
        import openml

        openml.config.set_root_cache_directory(str(Path(data.cache_dir) / "openml-client"))
        what = f"Downloading OpenML data set {data.dataset_id} (first use; cached afterwards)"
        with progress(what):
            dataset = openml.datasets.get_dataset(
                int(data.dataset_id),
                download_data=True,
                download_qualities=False,
                download_features_meta_data=False,
            )
            df, *_ = dataset.get_data(dataset_format="dataframe")
    except Exception as exc:
        raise DataError(
            f"Could not download OpenML data set {data.dataset_id} "
            f"({type(exc).__name__}: {exc}). This needs network access once; the data "
            f"is cached in {cache} afterwards. Offline, run with data=synthetic, or "
            "data=file data.path=<your copy>."
        ) from exc
    df = _clean_openml(df)
    with staged_outputs(cache.parent) as stage:
        df.to_parquet(stage / cache.name, index=False)
    log.info("Cached %d rows in %s", len(df), cache)
    return df


def _clean_openml(df: pd.DataFrame) -> pd.DataFrame:
    """Strip the quotes some OpenML exports keep around category labels."""
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype) or df[col].dtype == object:
            df[col] = df[col].astype(str).str.strip("'\"").astype("category")
    return df


def _file(data: DictConfig) -> pd.DataFrame:
    path = str(data.path)
    fmt = data.format or Path(path).suffix.lower().lstrip(".")
    if fmt not in ("csv", "parquet"):
        raise DataError(
            f"Cannot tell the format of data.path='{path}': use a .csv or .parquet file, "
            "or set data.format=csv|parquet."
        )
    if path.startswith("s3://"):
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / f"data.{fmt}"
            _download_s3(path, local)
            return _read(local, fmt, shown=path)
    local = Path(path).expanduser()
    if not local.is_file():
        raise DataError(f"data.path='{path}' does not exist (or is not a file).")
    return _read(local, fmt, shown=path)


def _read(local: Path, fmt: str, shown: str) -> pd.DataFrame:
    try:
        return pd.read_csv(local) if fmt == "csv" else pd.read_parquet(local)
    except Exception as exc:
        raise DataError(
            f"Could not read data.path='{shown}' as {fmt.upper()} ({type(exc).__name__}: {exc})."
        ) from exc


def _download_s3(uri: str, dest: Path) -> None:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    log.info("Downloading %s", uri)
    try:
        boto3.client("s3").download_file(bucket, key, str(dest))
    except (BotoCoreError, ClientError) as exc:
        raise DataError(f"Could not download data.path='{uri}': {exc}") from exc
