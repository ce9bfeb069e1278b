"""Any CSV or Parquet file (or a folder of Parquet files), local or ``s3://``."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import MISSING, DictConfig

from conf.errors import DataError
from conf.schema import DataConfig
from steps.sources.base import SourceUnit

if TYPE_CHECKING:  # registered before compose: pandas loads with the data
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class FileDataConfig(DataConfig):
    source: str = "file"
    path: str = MISSING  # local path or s3:// URI, .csv or .parquet
    format: str | None = MISSING  # csv | parquet (any case); null: from the suffix


class File(SourceUnit):
    name = "file"
    schema = FileDataConfig

    def load(self, data: DictConfig) -> pd.DataFrame:
        return _file(data)


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
    import pandas as pd

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
