"""freMTPL2freq (or any OpenML data set) through the ``openml`` package, cached as Parquet."""

from __future__ import annotations

import logging
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
class OpenMLDataConfig(DataConfig):
    source: str = "openml"
    dataset_id: int = MISSING
    cache_dir: str = MISSING


class OpenML(SourceUnit):
    name = "openml"
    schema = OpenMLDataConfig

    def load(self, data: DictConfig) -> pd.DataFrame:
        return _openml(data)


def _openml(data: DictConfig) -> pd.DataFrame:
    import pandas as pd

    from steps.runtime.io import staged_outputs
    from steps.runtime.progress import progress

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
    import pandas as pd

    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype) or df[col].dtype == object:
            df[col] = df[col].astype(str).str.strip("'\"").astype("category")
    return df
