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


# Compression suffixes pandas reads transparently (``claims.csv.gz``).
COMPRESSIONS = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")
FORMATS = ("csv", "parquet")


def file_format(path: str, configured: str | None) -> str:
    """``csv`` or ``parquet``: ``data.format`` (any case) or the file name's suffix."""
    if configured:
        fmt = str(configured).lower()
        if fmt not in FORMATS:
            raise DataError(
                f"data.format='{configured}' is not supported: use csv or parquet "
                "(or null: from the file name)."
            )
        return fmt
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    for compression in COMPRESSIONS:
        name = name.removesuffix(compression)
    fmt = Path(name).suffix.lstrip(".")
    if fmt not in FORMATS:
        raise DataError(
            f"Cannot tell the format of data.path='{path}' from its name: use a .csv, "
            ".csv.gz or .parquet file (or a folder of Parquet files), or set "
            "data.format=csv|parquet."
        )
    return fmt


def _file(data: DictConfig) -> pd.DataFrame:
    path = str(data.path)
    if path.startswith("s3://"):
        with tempfile.TemporaryDirectory() as tmp:
            local = _download_s3(path, Path(tmp))
            fmt = "parquet" if local.is_dir() and not data.format else None
            return _read(local, fmt or file_format(path, data.format), shown=path)
    local = Path(path).expanduser()
    if local.is_dir():
        fmt = file_format(path, data.format or "parquet")
        if fmt != "parquet":
            raise DataError(
                f"data.path='{path}' is a folder: only Parquet data sets can be folders "
                "(set data.format=parquet or point data.path at a file)."
            )
        return _read(local, fmt, shown=path)
    fmt = file_format(path, data.format)
    if not local.is_file():
        raise DataError(f"data.path='{path}' does not exist (or is not a file).")
    return _read(local, fmt, shown=path)


def _read(local: Path, fmt: str, shown: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return pd.read_parquet(local)
        df = pd.read_csv(local)
        header = pd.read_csv(local, header=None, nrows=1, dtype=str).iloc[0].tolist()
    except Exception as exc:
        raise DataError(
            f"Could not read data.path='{shown}' as {fmt.upper()} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())})."
        ) from exc
    repeated = sorted({str(c) for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(
            f"data.path='{shown}' has duplicate column names: {', '.join(repeated)}. "
            "Rename them so that every column has its own name."
        )
    return df


def _download_s3(uri: str, folder: Path) -> Path:
    """Download one object, or every object under a prefix (a partitioned Parquet folder)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    log.info("Downloading %s", uri)
    try:
        s3 = boto3.client("s3")
        prefix = key.rstrip("/") + "/" if key else ""
        objects = [
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if not obj["Key"].endswith("/")
        ]
        if not objects or (key and not key.endswith("/") and _exists(s3, bucket, key)):
            dest = folder / (key.rsplit("/", 1)[-1] or "data")
            s3.download_file(bucket, key, str(dest))
            return dest
        root = folder / "data"
        for name in objects:
            dest = root / name[len(prefix) :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, name, str(dest))
        return root
    except (BotoCoreError, ClientError) as exc:
        raise DataError(f"Could not download data.path='{uri}': {exc}") from exc


def _exists(s3: object, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
    except ClientError:
        return False
    return True
