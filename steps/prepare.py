"""Prepare step: load from the configured source, validate, split train/validation/test."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from conf.contract import SPLIT_FILE, SPLITS
from conf.errors import ConfigError, DataError
from steps.checks import check_config, check_memory
from steps.runtime.io import staged_folders
from steps.sources import load
from steps.validate import validate

log = logging.getLogger(__name__)
# Fewest rows a split may have: fewer leave its metrics undefined.
MIN_SPLIT_ROWS = 2


def split(df: pd.DataFrame, cfg: DictConfig) -> dict[str, pd.DataFrame]:
    """Seeded random split; validation drives early stopping and tuning, test is for the report."""
    val_frac, test_frac = cfg.split.validation_fraction, cfg.split.test_fraction
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise ConfigError(
            f"split.validation_fraction={val_frac} and split.test_fraction={test_frac} must "
            "each be between 0 and 1 and add up to less than 1."
        )
    # scikit-learn's train_test_split twice (test, then validation from the rest),
    # done on row positions so that each split is taken from the frame once.
    rest, test_rows = _shuffle_split(np.arange(len(df)), test_frac, cfg.split.seed)
    train_rows, validation_rows = _shuffle_split(
        rest, val_frac / (1 - test_frac), cfg.split.seed + 1
    )
    if not (len(train_rows) and len(validation_rows) and len(test_rows)):
        raise DataError(
            f"The data set '{cfg.data.name}' has {len(df)} rows: too few to split into train, "
            f"validation ({val_frac}) and test ({test_frac}) with at least {MIN_SPLIT_ROWS} rows "
            "each. Use more rows or other split fractions."
        )
    rows = {"train": train_rows, "validation": validation_rows, "test": test_rows}
    parts = {name: df.take(part_rows) for name, part_rows in rows.items()}
    for name, part in parts.items():
        if len(part) < MIN_SPLIT_ROWS:
            raise DataError(
                f"The {name} split of '{cfg.data.name}' has {len(part)} rows ({len(df)} in all): "
                f"each split needs at least {MIN_SPLIT_ROWS}. Use more rows or other split "
                "fractions."
            )
        if part[cfg.data.target].sum() <= 0:
            raise DataError(
                f"The {name} split of '{cfg.data.name}' ({len(part)} rows) has no claim at all "
                f"(column '{cfg.data.target}'): its deviance, D² and Gini are undefined. Use "
                "more rows, another split.seed, or check the target column."
            )
    return parts


def _shuffle_split(rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): the rows scikit-learn's ``train_test_split`` gives for this seed.

    The held-out part is the first ``ceil(fraction * n)`` rows of a seeded permutation.
    """
    order = np.random.RandomState(seed).permutation(len(rows))
    n_held = math.ceil(fraction * len(rows))
    return rows[order[n_held:]], rows[order[:n_held]]


def columns(cfg: DictConfig) -> list[str]:
    """The columns a split keeps: identifiers, target, exposure, features, true frequency."""
    data = cfg.data
    keep = [data.id_column, data.target, data.exposure, *data.categorical, *data.numeric]
    keep.append(data.true_frequency)
    return list(dict.fromkeys(c for c in keep if c))


def prepare(
    cfg: DictConfig, output_dir: Path, extra_files: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Write ``<output_dir>/<split>/data.parquet`` for train, validation and test.

    ``extra_files`` (name -> text, e.g. the resolved config) go beside each
    split's data. Nothing is written unless the config and the data pass validation;
    each split folder is staged and published within itself (see ``staged_folders``).
    """
    check_config(cfg)
    if cfg.data.source == "synthetic":
        check_memory(int(cfg.data.n_rows))
    raw = load(cfg.data)
    clean = validate(raw, cfg.data)[columns(cfg)]
    parts = split(clean, cfg)
    output_dir = Path(output_dir)
    with staged_folders({name: output_dir / name for name in SPLITS}) as stages:
        for stage in stages.values():
            for file_name, text in (extra_files or {}).items():
                (stage / file_name).write_text(text)
        # Parquet encoding releases the GIL: the three splits are written at the same time.
        with ThreadPoolExecutor(len(stages)) as pool:
            writes = [
                pool.submit(parts[name].to_parquet, stage / SPLIT_FILE, index=False)
                for name, stage in stages.items()
            ]
        for write in writes:
            write.result()
    sizes = ", ".join(f"{name}={len(parts[name])}" for name in SPLITS)
    log.info("Prepared %d rows of '%s': %s", len(clean), cfg.data.name, sizes)
    return {name: output_dir / name for name in SPLITS}
